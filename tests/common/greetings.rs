//! Fixture greetings for answering-machine detection: short German
//! answers of a person, voicemail greetings with a beep (espeak-ng).

use aiagc_models::tts::{EspeakVoice, Tts};

/// What a person says on picking up.
pub const HUMANS: [&str; 8] = [
    "Hallo?",
    "Ja, bitte?",
    "Müller.",
    "Ja?",
    "Hallo, wer ist da?",
    "Schmidt, hallo.",
    "Guten Tag.",
    "Praxis Sommer.",
];

/// Voicemail greetings and the frequency of their beep.
pub const MACHINES: [(&str, f32); 4] = [
    ("Guten Tag, Sie sind verbunden mit dem Anschluss von Familie Müller. Wir sind gerade nicht zu Hause. Bitte hinterlassen Sie eine Nachricht nach dem Signalton.", 1000.0),
    ("Hallo, hier ist der Anrufbeantworter von Thomas Schmidt. Sprechen Sie nach dem Piep.", 850.0),
    ("Der gewünschte Gesprächspartner ist zur Zeit nicht erreichbar. Bitte sprechen Sie nach dem Signalton.", 440.0),
    ("Herzlich willkommen bei der Mailbox von Anna Weber. Ich rufe gern zurück.", 1400.0),
];

/// `text` in an espeak-ng voice, 16 kHz.
pub fn speak(text: &str, voice: &str, rate: u32) -> Vec<f32> {
    let mut v = EspeakVoice {
        voice: voice.into(),
        rate,
    };
    let a = v.synthesize(text).unwrap();
    super::resample(&a.samples, a.sample_rate, 16000)
}

/// `ms` of digital silence at 16 kHz.
pub fn silence(ms: usize) -> Vec<f32> {
    vec![0.0; ms * 16]
}

/// A beep of `f` Hz, `ms` long, at about −15 dBFS.
pub fn beep(f: f32, ms: usize) -> Vec<f32> {
    (0..ms * 16)
        .map(|i| 0.25 * (2.0 * std::f32::consts::PI * f * i as f32 / 16000.0).sin())
        .collect()
}
