//! Who answered, over the real Asterisk: each fixture greeting is played by
//! the callee side of a Local channel; the calling side runs Asterisk's own
//! `AMD()` (with its defaults), or enters aiagc as an outbound call, whose
//! detector decides, greets a person and leaves the message on a machine
//! after its beep (recorded on the callee side). Both on the same audio.

mod common;
use common::asterisk::{read_wav, rms, Asterisk, Setup};
use common::greetings::{beep, silence, speak, HUMANS, MACHINES};

use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, MediaConfig};
use aiagc::runtime::outbound::OutboundConfig;
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::client::{AriClient, Originate};
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_engine::Codec;
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fixture {
    name: String,
    machine: bool,
    text: String,
}

fn pcm(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect()
}

/// The fixtures as sounds `g0`, `g1`, … (a person's answer, or a machine's
/// greeting ending with its beep).
fn sounds(ast: &Asterisk) -> Vec<Fixture> {
    let mut out = Vec::new();
    for voice in ["de", "de+m3"] {
        for text in HUMANS {
            let mut a = silence(300);
            a.extend(speak(text, voice, 165));
            out.push((false, text.to_owned(), a));
        }
        for (text, tone) in MACHINES {
            let mut a = silence(500);
            a.extend(speak(text, voice, 165));
            a.extend(silence(400));
            a.extend(beep(tone, 500));
            out.push((true, text.to_owned(), a));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (machine, text, audio))| {
            let name = format!("g{i}");
            ast.add_sound(&name, &pcm(&audio));
            Fixture {
                name,
                machine,
                text,
            }
        })
        .collect()
}

const DIALPLAN: &str = "[amd-callee]\n\
    exten => _g.,1,Answer()\n\
    same => n,Playback({dir}/snd/${EXTEN})\n\
    same => n,Record({dir}/rec/${EXTEN}.wav16,3,12,qkx)\n\
    same => n,Hangup()\n\
    [amd-asterisk]\n\
    exten => s,1,AMD()\n\
    same => n,Set(DB(amd/${FIXTURE})=${AMDSTATUS}:${AMDCAUSE})\n\
    same => n,Hangup()\n\
    [amd-aiagc]\n\
    exten => s,1,Stasis(aiagc,outbound)\n\
    same => n,Hangup()\n";

async fn place(client: &AriClient, fixture: &str, context: &str) -> String {
    let mut variables = BTreeMap::new();
    variables.insert("FIXTURE".to_owned(), fixture.to_owned());
    client
        .originate(&Originate {
            endpoint: format!("Local/{fixture}@amd-callee"),
            context: Some(context.into()),
            extension: Some("s".into()),
            priority: Some(1),
            variables,
            ..Originate::default()
        })
        .await
        .unwrap()
        .id
}

async fn no_channels(client: &AriClient, within: Duration) {
    let t = Instant::now();
    while !client.channels().await.unwrap().is_empty() {
        assert!(t.elapsed() < within, "calls did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_amd_and_ours_on_the_same_greetings() {
    // app_amd loads only with an amd.conf: Asterisk's defaults.
    let ast = Asterisk::start(Setup {
        files: vec![("amd.conf".into(), "[general]\n".into())],
        ..Setup::default()
    });
    ast.set_dialplan(DIALPLAN);
    std::fs::create_dir_all(ast.dir.join("rec")).unwrap();
    let fixtures = sounds(&ast);
    let client = AriClient::new(ast.ari("aiagc")).unwrap();

    // Asterisk's AMD() on each greeting, a few calls at a time.
    for batch in fixtures.chunks(8) {
        for f in batch {
            place(&client, &f.name, "amd-asterisk").await;
        }
        no_channels(&client, Duration::from_secs(30)).await;
    }
    let mut asterisk = (0, 0, Vec::new());
    for f in &fixtures {
        let got = ast.cli(&format!("database get amd {}", f.name));
        let status = got
            .split("Value:")
            .nth(1)
            .map(str::trim)
            .unwrap_or("none")
            .to_owned();
        let right = status.starts_with(if f.machine { "MACHINE" } else { "HUMAN" })
            || (!f.machine && status.starts_with("NOTSURE"));
        if right {
            if f.machine {
                asterisk.1 += 1
            } else {
                asterisk.0 += 1
            }
        } else {
            asterisk
                .2
                .push(format!("{} {:?}: {status}", f.name, f.text));
        }
    }

    // aiagc's detector on the same greetings, as outbound calls.
    let model = Arc::new(
        WhisperModel::load(
            &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
        )
        .expect("model (run scripts/setup.sh)"),
    );
    let (tx, summaries) = crossbeam_channel::unbounded::<CallSummary>();
    let app = App::start(
        ast.ari("aiagc"),
        PortRange::new("127.0.0.1".parse().unwrap(), 35300..=35399),
        MediaConfig {
            filler_after: None,
            outbound: OutboundConfig {
                machine_message: "Hier ist die Praxis Doktor Sommer. Bitte rufen Sie uns zurück."
                    .into(),
                ..OutboundConfig::default()
            },
            ..MediaConfig::default()
        },
        ControllerConfig {
            format: Codec::Ulaw,
            ..ControllerConfig::default()
        },
        SpeechPool::start(model, 1, 16, SttConfig::default()).unwrap(),
        common::praxis(),
        Some(tx),
    )
    .unwrap();
    let t = Instant::now();
    while !app.controller.is_connected() || client.application().await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "app not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut calls = BTreeMap::new();
    for batch in fixtures.chunks(4) {
        for f in batch {
            calls.insert(place(&client, &f.name, "amd-aiagc").await, f);
        }
        no_channels(&client, Duration::from_secs(60)).await;
    }
    let mut seen: Vec<CallSummary> = Vec::new();
    let t = Instant::now();
    while seen.len() < calls.len() && t.elapsed() < Duration::from_secs(20) {
        seen.extend(summaries.try_iter());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ours = (0, 0, Vec::new());
    let mut messages = (0, 0);
    for s in &seen {
        let Some(f) = calls.get(&s.call) else {
            continue;
        };
        let answered = s
            .answered_by
            .as_ref()
            .map(|a| format!("{}:{}", a.0, a.1))
            .unwrap_or_default();
        let right = answered.starts_with(if f.machine { "MACHINE" } else { "HUMAN" })
            || (!f.machine && answered.starts_with("NOTSURE"));
        if right {
            if f.machine {
                ours.1 += 1
            } else {
                ours.0 += 1
            }
        } else {
            ours.2.push(format!("{} {:?}: {answered}", f.name, f.text));
        }
        // What the callee side heard after its greeting: a machine the
        // message, a person the practice's greeting.
        let (rec, _) = read_wav(&ast.dir.join("rec").join(format!("{}.wav16", f.name)));
        if f.machine {
            messages.1 += 1;
            if s.outcome.as_deref() == Some("message_left") && rms(&rec) > 0.02 {
                messages.0 += 1;
            }
        }
    }
    let humans = fixtures.iter().filter(|f| !f.machine).count();
    let machines = fixtures.len() - humans;
    eprintln!(
        "over the real Asterisk: AMD() persons {}/{humans}, machines {}/{machines} (wrong: {:?}); \
         aiagc persons {}/{humans}, machines {}/{machines} (wrong: {:?}); messages left after the beep {}/{}",
        asterisk.0, asterisk.1, asterisk.2, ours.0, ours.1, ours.2, messages.0, messages.1
    );
    assert_eq!(seen.len(), calls.len(), "a summary for every outbound call");
    assert_eq!(ours.1, machines, "every machine detected by aiagc");
    assert!(ours.0 * 10 >= humans * 9, "persons {}/{humans}", ours.0);
    assert_eq!(messages.0, messages.1, "every machine got the message");
    assert!(asterisk.0 + asterisk.1 > 0, "AMD() ran: {:?}", asterisk.2);
    assert_eq!(app.drain(Duration::from_secs(2)).await, 0);
}
