//! Who answered, on fixture greetings in simulated time: short German
//! answers of a person against voicemail greetings with a beep, each in
//! three espeak-ng voices at two rates, through the engine's detector as
//! the media task runs it (20 ms frames at 16 kHz, µ-law on the way).

mod common;

use aiagc_engine::amd::{Amd, AmdConfig, Answered, BeepDetector};
use common::greetings::{beep, silence, speak, HUMANS, MACHINES};

/// Through G.711 µ-law and back, as a telephone line carries it.
fn line(x: &[f32]) -> Vec<f32> {
    use aiagc_engine::codec::{Decoder, Encoder};
    let down = common::resample(x, 16000, 8000);
    let pcm: Vec<i16> = down
        .iter()
        .map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect();
    let mut enc = Encoder::new(aiagc_engine::Codec::Ulaw).unwrap();
    let mut dec = Decoder::new(aiagc_engine::Codec::Ulaw).unwrap();
    let mut out = Vec::new();
    for chunk in pcm.chunks(160) {
        let mut bytes = [0u8; 160];
        let n = enc.encode(chunk, &mut bytes).unwrap();
        let mut back = [0i16; 160];
        let m = dec.decode(&bytes[..n], &mut back).unwrap();
        out.extend(back[..m].iter().map(|s| *s as f32 / 32768.0));
    }
    common::resample(&out, 8000, 16000)
}

/// The verdict, and where (s) a beep was heard, over `audio`.
pub fn detect(audio: &[f32], config: AmdConfig) -> (Answered, String, Option<f64>) {
    let mut amd = Amd::new(config);
    let mut beep = BeepDetector::new(16000);
    let mut verdict = None;
    let mut beep_at = None;
    for (i, frame) in audio.chunks(320).enumerate() {
        if verdict.is_none() {
            verdict = amd.frame(frame).cloned();
        }
        if beep.frame(frame) && beep_at.is_none() {
            beep_at = Some(i as f64 * 0.02);
        }
    }
    let d = verdict.unwrap_or_else(|| {
        amd.advance(std::time::Duration::from_secs(10), Default::default())
            .cloned()
            .unwrap()
    });
    (d.answered, d.cause, beep_at)
}

/// Each fixture once: (is a machine, text, voice/rate, audio on the line,
/// where its greeting ends, s).
fn fixtures() -> Vec<(bool, String, String, Vec<f32>, f64)> {
    let mut out = Vec::new();
    for voice in ["de", "de+f2", "de+m3"] {
        for rate in [150, 185] {
            let who = format!("{voice}/{rate}");
            for text in HUMANS {
                let mut a = silence(300);
                a.extend(speak(text, voice, rate));
                let end = a.len() as f64 / 16000.0;
                a.extend(silence(3000));
                out.push((false, text.to_owned(), who.clone(), line(&a), end));
            }
            for (text, tone) in MACHINES {
                let mut a = silence(500);
                a.extend(speak(text, voice, rate));
                let end = a.len() as f64 / 16000.0;
                a.extend(silence(400));
                a.extend(beep(tone, 500));
                a.extend(silence(2000));
                out.push((true, text.to_owned(), who.clone(), line(&a), end));
            }
        }
    }
    out
}

/// Asterisk's `amd.conf` defaults against aiagc's (`[outbound]`), side by
/// side on the same audio; the beep detector on every fixture.
#[test]
fn fixture_greetings_are_told_apart_and_the_beep_is_found() {
    let fixtures = fixtures();
    let configs = [
        (
            "asterisk defaults (maximum_number_of_words = 2)",
            AmdConfig::default(),
        ),
        (
            "maximum_number_of_words = 3",
            AmdConfig {
                maximum_number_of_words: 3,
                ..AmdConfig::default()
            },
        ),
        (
            "aiagc default (maximum_number_of_words = 4)",
            aiagc::runtime::outbound::german_amd(),
        ),
    ];
    let mut rows = Vec::new();
    for (name, config) in configs {
        let (mut persons, mut machines, mut wrong) = (0, 0, Vec::new());
        for (machine, text, who, audio, _) in &fixtures {
            let (answered, cause, _) = detect(audio, config);
            match (machine, answered) {
                (true, Answered::Machine) => machines += 1,
                (false, Answered::Human | Answered::NotSure) => persons += 1,
                _ => wrong.push(format!("{who} {text:?}: {cause}")),
            }
        }
        let humans = fixtures.iter().filter(|f| !f.0).count();
        eprintln!(
            "AMD {name}: persons {persons}/{humans}, machines {machines}/{}; wrong: {wrong:?}",
            fixtures.len() - humans
        );
        rows.push((persons, humans, machines, fixtures.len() - humans));
    }
    let (persons, humans, machines, boxes) = rows[2];
    assert_eq!(machines, boxes, "every voicemail greeting is a machine");
    assert!(persons * 20 >= humans * 19, "persons {persons}/{humans}");
    assert!(
        rows[2].0 >= rows[0].0,
        "the German default does not do worse than Asterisk's"
    );

    let (mut found, mut false_beeps, mut boxes) = (0, 0, 0);
    for (machine, text, who, audio, end) in &fixtures {
        let (_, _, beep_at) = detect(audio, AmdConfig::default());
        match (machine, beep_at) {
            (true, Some(t)) if t >= *end => found += 1,
            (_, Some(t)) => {
                false_beeps += 1;
                eprintln!("{who} {text:?}: beep at {t:.2} s (greeting ends {end:.2} s)");
            }
            _ => {}
        }
        boxes += *machine as usize;
    }
    eprintln!("beeps found after the greeting {found}/{boxes}, false beeps {false_beeps}");
    assert_eq!(found, boxes);
    assert_eq!(false_beeps, 0);
}

mod calls {
    //! Outbound calls through the whole app (simulator, ARI, media): the
    //! callee answers with a short "Hallo?" and is greeted, or a voicemail
    //! box greets and beeps and gets the message after the beep.
    use super::*;
    use aiagc::runtime::app::App;
    use aiagc::runtime::media::{CallSummary, MediaConfig};
    use aiagc::runtime::outbound::OutboundConfig;
    use aiagc::runtime::speech::SpeechPool;
    use aiagc_ari::controller::ControllerConfig;
    use aiagc_ari::ports::PortRange;
    use aiagc_ari::sim::{CallerScript, SimConfig, Simulator};
    use aiagc_models::stt::{SttConfig, WhisperModel};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    async fn start() -> (Simulator, App, crossbeam_channel::Receiver<CallSummary>) {
        let model = Arc::new(
            WhisperModel::load(
                &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
            )
            .expect("model (run scripts/setup.sh)"),
        );
        let pool = SpeechPool::start(model, 1, 8, SttConfig::default()).unwrap();
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let app = App::start(
            sim.client_config("aiagc"),
            PortRange::new("127.0.0.1".parse().unwrap(), 33200..=33299),
            MediaConfig {
                filler_after: None,
                outbound: OutboundConfig {
                    machine_message:
                        "Hier ist die Praxis Doktor Sommer. Bitte rufen Sie uns zurück.".into(),
                    ..OutboundConfig::default()
                },
                ..MediaConfig::default()
            },
            ControllerConfig::default(),
            pool,
            common::praxis(),
            Some(tx),
        )
        .unwrap();
        let t = Instant::now();
        while sim.connections() == 0 {
            assert!(t.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (sim, app, rx)
    }

    fn pcm(x: &[f32]) -> Vec<i16> {
        x.iter()
            .map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .collect()
    }

    fn outbound() -> CallerScript {
        CallerScript {
            args: vec!["outbound".into()],
            number: "+4930555".into(),
            ..CallerScript::default()
        }
    }

    /// Waits until media runs for `caller` (the simulator takes `say`).
    async fn say_when_up(sim: &Simulator, caller: &str, audio: &[i16]) -> Instant {
        let t = Instant::now();
        while !sim.say(caller, audio) {
            assert!(t.elapsed() < Duration::from_secs(10), "media never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Instant::now()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_person_is_greeted_and_a_machine_gets_the_message_after_its_beep() {
        let (sim, _app, summaries) = start().await;
        let mut seen = Vec::new();

        // A person: "Hallo?" and waits; nothing is sent to them before.
        let person = sim.place_call("aiagc", outbound()).unwrap();
        let mut hello = silence(200);
        hello.extend(speak("Hallo?", "de", 165));
        let said = say_when_up(&sim, &person, &pcm(&hello)).await;
        let greeted = common::agent_spoke(&sim, &person, said).await;
        assert!(
            !sim.received_for_caller(&person)
                .iter()
                .any(|r| r.at < said && common::loud(r)),
            "the agent waited for the callee"
        );
        eprintln!(
            "person greeted {:.0} ms after they began",
            greeted.duration_since(said).as_secs_f64() * 1000.0
        );
        sim.hangup(&person);
        let s = common::summary_of(&summaries, &mut seen, &person).await;
        assert_eq!(
            s.answered_by.as_ref().map(|a| a.0.as_str()),
            Some("HUMAN"),
            "{s:?}"
        );
        assert!(
            s.turns.iter().any(|t| t.input == "start"),
            "the dialogue started"
        );

        // A voicemail box: its greeting, a beep; the message after the beep.
        let machine = sim.place_call("aiagc", outbound()).unwrap();
        let (text, tone) = MACHINES[0];
        let mut greeting = silence(300);
        greeting.extend(speak(text, "de", 165));
        greeting.extend(silence(400));
        let beep_at = greeting.len() as f64 / 16000.0;
        greeting.extend(beep(tone, 500));
        let beep_end = greeting.len() as f64 / 16000.0;
        greeting.extend(silence(4000));
        let said = say_when_up(&sim, &machine, &pcm(&greeting)).await;
        // What the box heard, kept while the call lasts (the simulator
        // forgets a leg when it is hung up).
        let mut received = Vec::new();
        let t = Instant::now();
        while sim.has_channel(&machine) {
            let now = sim.received_for_caller(&machine);
            if now.len() >= received.len() {
                received = now;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the call did not end"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let s = common::summary_of(&summaries, &mut seen, &machine).await;
        assert_eq!(
            s.answered_by.as_ref().map(|a| a.0.as_str()),
            Some("MACHINE"),
            "{s:?}"
        );
        assert_eq!(s.outcome.as_deref(), Some("message_left"));
        assert_eq!(s.ended_by, "hangup");
        assert!(
            s.turns.is_empty(),
            "no dialogue with a machine: {:?}",
            s.turns
        );
        let heard: Vec<f64> = received
            .iter()
            .filter(|r| common::loud(r))
            .map(|r| r.at.duration_since(said).as_secs_f64())
            .collect();
        let first = heard.first().copied().expect("the message was played");
        eprintln!(
            "beep {beep_at:.2}–{beep_end:.2} s, message from {first:.2} s to {:.2} s",
            heard.last().unwrap()
        );
        assert!(
            first > beep_end,
            "the message began after the beep ({first:.2} s)"
        );
        assert!(
            heard.last().unwrap() - first > 2.0,
            "the whole message was played"
        );
    }
}
