//! The OpenAI-compatible transcription client against a loopback server
//! that records what it was sent and answers as told.

use aiagc_models::stt::{SttConfig, SttError};
use aiagc_models::stt_remote::{RemoteStt, RemoteSttConfig, MAX_RESPONSE_BYTES};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// One recorded request: header lines and body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

/// Answers each connection in turn with (status, body, delay before it).
fn server(answers: Vec<(u16, Vec<u8>, Duration)>) -> (String, Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (status, body, delay) in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut length) = (Vec::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push(line.trim_end().to_owned());
            }
            let mut request = vec![0; length];
            reader.read_exact(&mut request).ok();
            let _ = tx.send(Request {
                head,
                body: request,
            });
            std::thread::sleep(delay);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (format!("http://{addr}/v1"), rx)
}

fn client(url: &str, timeout_ms: u64) -> RemoteStt {
    RemoteStt::new(RemoteSttConfig {
        base_url: url.into(),
        model: "Systran/faster-whisper-small".into(),
        api_key: Some("geheim".into()),
        timeout: Duration::from_millis(timeout_ms),
    })
    .unwrap()
}

fn tone(seconds: f64) -> Vec<f32> {
    (0..(seconds * 16000.0) as usize)
        .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 16000.0).sin())
        .collect()
}

/// The value of the multipart field `name`.
fn field(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find(&format!("name=\"{name}\""))?;
    let rest = &text[start..];
    let value = &rest[rest.find("\r\n\r\n")? + 4..];
    Some(value[..value.find("\r\n")?].to_owned())
}

#[test]
fn sends_the_utterance_as_wav_with_model_language_and_prompt() {
    let (url, requests) = server(vec![(
        200,
        br#"{"text":" Am Dienstag um halb drei."}"#.to_vec(),
        Duration::ZERO,
    )]);
    let audio = tone(1.5);
    let stt = SttConfig {
        initial_prompt: Some("Termin, Dienstag, halb drei".into()),
        ..SttConfig::default()
    };
    let t = client(&url, 2000).transcribe(&audio, &stt).unwrap();
    assert_eq!(t.text, "Am Dienstag um halb drei.");
    assert_eq!(t.audio, Duration::from_millis(1500));
    let r = requests.recv_timeout(Duration::from_secs(2)).unwrap();
    assert!(
        r.head[0].starts_with("POST /v1/audio/transcriptions "),
        "{:?}",
        r.head[0]
    );
    assert!(
        r.head
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer geheim")),
        "{:?}",
        r.head
    );
    assert!(r.head.iter().any(|h| h
        .to_ascii_lowercase()
        .starts_with("content-type: multipart/form-data; boundary=")));
    assert_eq!(
        field(&r.body, "model").as_deref(),
        Some("Systran/faster-whisper-small")
    );
    assert_eq!(field(&r.body, "language").as_deref(), Some("de"));
    assert_eq!(field(&r.body, "response_format").as_deref(), Some("json"));
    assert_eq!(
        field(&r.body, "prompt").as_deref(),
        Some("Termin, Dienstag, halb drei")
    );
    // The file part is a WAV holding exactly the audio, at 16 kHz 16-bit.
    let riff = r.body.windows(4).position(|w| w == b"RIFF").unwrap();
    let wav = hound::WavReader::new(&r.body[riff..]).unwrap();
    let spec = wav.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16000, 1, 16)
    );
    let samples: Vec<i16> = wav.into_samples().map(|s| s.unwrap()).collect();
    assert_eq!(samples.len(), audio.len());
    for (got, want) in samples.iter().zip(&audio).step_by(97) {
        assert!((*got as f32 / 32767.0 - want).abs() < 1e-3);
    }
}

#[test]
fn auto_language_and_no_prompt_leave_the_fields_out() {
    let (url, requests) = server(vec![(200, br#"{"text":"Ja."}"#.to_vec(), Duration::ZERO)]);
    let stt = SttConfig {
        language: "auto".into(),
        ..SttConfig::default()
    };
    let t = client(&url, 2000).transcribe(&tone(0.5), &stt).unwrap();
    assert_eq!(t.text, "Ja.");
    let r = requests.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(field(&r.body, "language"), None);
    assert_eq!(field(&r.body, "prompt"), None);
}

fn expect_remote_error(result: Result<aiagc_models::stt::Transcript, SttError>, needle: &str) {
    match result {
        Err(SttError::Remote(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected a remote error with {needle:?}, got {other:?}"),
    }
}

#[test]
fn server_errors_bad_answers_and_silence_are_typed_errors() {
    let huge = format!(
        r#"{{"text":"{}"}}"#,
        "a".repeat(MAX_RESPONSE_BYTES as usize + 10)
    );
    let (url, _requests) = server(vec![
        (
            500,
            br#"{"error":"CUDA out of memory"}"#.to_vec(),
            Duration::ZERO,
        ),
        (401, br#"{"error":"bad key"}"#.to_vec(), Duration::ZERO),
        (200, b"<html>proxy</html>".to_vec(), Duration::ZERO),
        (200, br#"{"segments":[]}"#.to_vec(), Duration::ZERO),
        (200, huge.into_bytes(), Duration::ZERO),
        (
            200,
            br#"{"text":"zu spaet"}"#.to_vec(),
            Duration::from_millis(800),
        ),
    ]);
    let c = client(&url, 300);
    let stt = SttConfig::default();
    let audio = tone(1.0);
    expect_remote_error(
        c.transcribe(&audio, &stt),
        "HTTP 500: {\"error\":\"CUDA out of memory\"}",
    );
    expect_remote_error(c.transcribe(&audio, &stt), "HTTP 401");
    expect_remote_error(c.transcribe(&audio, &stt), "not {\"text\"");
    expect_remote_error(c.transcribe(&audio, &stt), "missing field `text`");
    expect_remote_error(c.transcribe(&audio, &stt), "larger than");
    expect_remote_error(c.transcribe(&audio, &stt), "no answer within");
}

#[test]
fn nothing_listening_and_bad_urls_are_errors() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = client(&format!("http://127.0.0.1:{port}/v1"), 500);
    assert!(matches!(
        c.transcribe(&tone(0.2), &SttConfig::default()),
        Err(SttError::Remote(_))
    ));
    for bad in ["", "127.0.0.1:8000/v1", "ftp://host/v1"] {
        let r = RemoteStt::new(RemoteSttConfig {
            base_url: bad.into(),
            ..RemoteSttConfig::default()
        });
        assert!(
            matches!(r, Err(SttError::Remote(m)) if m.contains("not http")),
            "{bad:?}"
        );
    }
}

#[test]
fn the_key_never_shows_in_debug_output() {
    let c = client("http://127.0.0.1:9/v1", 100);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("geheim") && shown.contains("<redacted>"),
        "{shown}"
    );
}
