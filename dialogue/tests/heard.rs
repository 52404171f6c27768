//! Answers heard by whisper base with what the dialogue expects: its
//! answer grammars hold the decoder to the expected answers (and give way
//! to others), the confusable words give readings scored on the audio, and
//! one recorded human sentence comes back as words.

#[path = "../../models/tests/support/mod.rs"]
mod support;
use support::{fixtures, model, serial};

use aiagc_models::audio::{read_wav_16k, through_ulaw};
use aiagc_models::manifest::default_dir;
use aiagc_models::stt::{word_error_rate, SttConfig};

/// A state's grammar holds the answers it expects and gives way to one it
/// does not: "Ja, genau." is decoded inside the yes/no grammar; "Ich möchte
/// mit einem Mitarbeiter sprechen." costs the grammar more than its budget
/// in one step and is decoded again without it.
#[test]
fn grammar_holds_expected_answers_and_falls_back_on_others() {
    use aiagc_dialogue::answers::{grammar, Answer};
    use aiagc_models::stt::Constrained;
    let _serial = serial();
    let yes_no = grammar(&[Answer::YesNo]).unwrap().unwrap();
    // As the practice scenario's confirmation asks: its prompt and grammar.
    let config = SttConfig {
        grammar: Some(yes_no.clone()),
        initial_prompt: Some("Ja, genau. Ja, das passt. Nein.".into()),
        ..SttConfig::default()
    };
    let mut w = model().worker().unwrap();
    let clip = |name: &str| read_wav_16k(&fixtures().join("de").join(name)).unwrap();

    let t = w
        .transcribe(&clip("yes_02_v0_r150_16k.wav"), &config)
        .unwrap();
    assert!(matches!(t.constrained, Constrained::Held { .. }), "{t:?}");
    assert!(yes_no.accepts(&t.text), "{:?}", t.text);

    let t = w
        .transcribe(&clip("human_01_v2_r150_16k.wav"), &config)
        .unwrap();
    assert!(
        matches!(t.constrained, Constrained::FellBack { .. }),
        "{t:?}"
    );
    assert!(!yes_no.accepts(&t.text), "{:?}", t.text);

    // Without a grammar nothing is constrained.
    let free = w
        .transcribe(&clip("yes_02_v0_r150_16k.wav"), &SttConfig::default())
        .unwrap();
    assert_eq!(free.constrained, Constrained::No);
}

/// Readings of a date answer are scored on its audio: the decoded text
/// with 0, its variants (the swapped weekday, the dropped "halb") with the
/// model's log-probability relative to it, the word said likelier than its
/// swap, the same figures on a second run, and nothing without confusions.
#[test]
fn readings_of_an_answer_are_scored_on_its_audio() {
    use aiagc_dialogue::answers::{confusions, grammar, Answer};
    let _serial = serial();
    let answers = [Answer::DateTime];
    let config = SttConfig {
        grammar: grammar(&answers).unwrap(),
        confusions: confusions(&answers),
        initial_prompt: Some("Am Dienstag um halb drei. Viertel nach vier.".into()),
        ..SttConfig::default()
    };
    let mut w = model().worker().unwrap();
    // "Haben Sie am Dienstag um halb drei etwas frei?"
    let audio = read_wav_16k(&fixtures().join("de/book_02_v0_r150_16k.wav")).unwrap();
    let t = w.transcribe(&audio, &config).unwrap();
    assert!(t.text.contains("Dienstag"), "{:?}", t.text);
    let decoded: Vec<_> = t.nbest.iter().filter(|h| h.text == t.text).collect();
    assert_eq!(decoded.len(), 1, "{:?}", t.nbest);
    assert_eq!(decoded[0].logprob, 0.0);
    let swapped = t
        .nbest
        .iter()
        .find(|h| h.text == t.text.replace("Dienstag", "Donnerstag"))
        .unwrap_or_else(|| panic!("no Donnerstag reading: {:?}", t.nbest));
    assert!(swapped.logprob < -1.0, "{:?}", t.nbest);
    assert!(
        t.nbest.iter().all(|h| h.logprob.is_finite()),
        "{:?}",
        t.nbest
    );
    assert!(
        t.nbest.windows(2).all(|p| p[0].logprob >= p[1].logprob),
        "likeliest first: {:?}",
        t.nbest
    );
    assert!(t.rescoring > std::time::Duration::ZERO && t.rescoring < t.elapsed);
    let again = w.transcribe(&audio, &config).unwrap();
    assert_eq!(again.nbest, t.nbest, "scoring is repeatable");
    let plain = w
        .transcribe(
            &audio,
            &SttConfig {
                confusions: None,
                ..config
            },
        )
        .unwrap();
    assert!(plain.nbest.is_empty());
}

/// One real recorded German sentence (PyPI `auditok` 0.2.0, a person, not
/// espeak-ng) at 16 kHz and through µ-law: the words come back (measured
/// WER 0.33 and 0.67: "Was da manch, zäht, das wird er vielfach ernten."
/// and "Was da manch, das war eher vielfach unten."), and the
/// readings of a date answer are not needed for it (no confusable words),
/// so a transcript without them is one without readings.
#[test]
fn a_recorded_german_sentence_is_heard() {
    use aiagc_dialogue::answers::{confusions, Answer};
    let _serial = serial();
    let reference = "Was der Mensch sät, das wird er vielfach ernten.";
    let path = default_dir().join("speech/was_der_mensch_saet_44100Hz.wav");
    let wide = read_wav_16k(&path).expect("auditok sentence (run scripts/setup.sh)");
    let narrow = through_ulaw(&wide).unwrap();
    let mut w = model().worker().unwrap();
    let config = SttConfig {
        confusions: confusions(&[Answer::DateTime]),
        ..SttConfig::default()
    };
    for (band, audio, bound) in [("16 kHz", &wide, 0.4), ("µ-law", &narrow, 0.75)] {
        let t = w.transcribe(audio, &config).unwrap();
        let wer = word_error_rate(reference, &t.text);
        println!("{band}: {:?} WER {wer:.2}", t.text);
        assert!(wer <= bound, "{band}: {:?} (WER {wer:.2})", t.text);
        assert!(t.nbest.is_empty(), "{:?}", t.nbest);
    }
}
