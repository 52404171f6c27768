//! The turn policy driven in simulated time: every input is an event, a
//! worker result or a key at an instant the test chooses.

use super::*;
use aiagc_engine::{MediaPosition, Pause};

const REPLY: &str = "Gern. Für welchen Tag möchten Sie den Termin?";

/// A conversation and the clock the test keeps for it.
struct Sim {
    conv: Conversation,
    t0: Instant,
    now: Instant,
    media: Media,
}

impl Sim {
    fn new(config: ConversationConfig) -> Self {
        let t0 = Instant::now();
        Self {
            conv: Conversation::new(config, "c1", Party::default(), true, true),
            t0,
            now: t0,
            media: Media::default(),
        }
    }

    fn stop_mode() -> Self {
        Self::new(ConversationConfig {
            barge_in: BargeIn::Stop,
            ..ConversationConfig::default()
        })
    }

    /// Moves the clock (and the media clock with it) to `ms`.
    fn at(&mut self, ms: u64) -> &mut Self {
        self.now = self.t0 + Duration::from_millis(ms);
        self.media.time = Duration::from_millis(ms);
        self
    }

    fn event(&mut self, e: CallEvent) -> Vec<Output> {
        self.conv.handle_event(e, self.media, self.now);
        self.drain()
    }

    fn speech(&mut self, o: SpeechOut) -> Vec<Output> {
        self.conv.handle_speech(o, self.media, self.now);
        self.drain()
    }

    fn timeout(&mut self) -> Vec<Output> {
        self.conv.handle_timeout(self.media, self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.conv.poll_output()).collect()
    }

    /// The greeting's job is out; its reply plays (`text`), and is answered.
    fn greeted(&mut self, text: &str, action: Option<Action>) {
        self.conv.start(self.now);
        let out = self.drain();
        assert!(matches!(&out[..], [Output::Submit(s)] if matches!(s.work, Work::Start)));
        let turn = self.conv.turn();
        self.speech(SpeechOut::Audio(reply(turn, text)));
        self.media.speaking = true;
        self.media.queued = Duration::from_secs(3);
        self.speech(SpeechOut::Answered(Box::new(record(turn, text)), action));
    }

    /// The engine paused the reply at caller sound: what comes of it.
    fn barge_in(&mut self) -> Vec<Output> {
        self.media.speaking = false;
        self.media.paused = true;
        self.media.held = self.media.queued;
        self.media.queued = Duration::ZERO;
        // The sound began 120 ms ago (the barge-in's minimum speech).
        let at = self.media.time.saturating_sub(Duration::from_millis(120));
        self.event(CallEvent::BargeIn {
            at: position(at.as_millis() as u64),
        })
    }
}

fn position(ms: u64) -> MediaPosition {
    MediaPosition {
        elapsed: Duration::from_millis(ms),
        rtp_timestamp: 0,
    }
}

fn pause(id: u64, first: u64, end_ms: u64) -> CallEvent {
    CallEvent::SpeechPaused(Pause {
        id,
        first,
        samples: vec![0.1; 1600],
        end: position(end_ms),
        silence: Duration::from_millis(120),
    })
}

fn ended(pause: Option<u64>, end_ms: u64) -> CallEvent {
    CallEvent::SpeechEnded(Utterance {
        samples: vec![0.1; 3200],
        start: position(end_ms.saturating_sub(1000)),
        end: position(end_ms),
        barge_in: false,
        truncated: false,
        pause,
    })
}

fn partial(pause: u64, text: &str, hint: TurnHint) -> SpeechOut {
    SpeechOut::Partial {
        pause,
        transcript: Heard::from(text),
        stt: Duration::from_millis(150),
        hint,
    }
}

fn reply(turn: u64, text: &str) -> ReplyAudio {
    ReplyAudio {
        turn,
        samples: vec![0.0; 160],
        sample_rate: 8000,
        text: text.to_owned(),
    }
}

fn record(turn: u64, reply: &str) -> TurnRecord {
    TurnRecord {
        call: "c1".into(),
        turn,
        input: "start",
        transcript: String::new(),
        readings: 0,
        reply: reply.into(),
        action: None,
        outcome: None,
        slots: Default::default(),
        handed_over: Instant::now(),
        stt: Duration::ZERO,
        dialogue: Duration::ZERO,
        tts_first_audio: Duration::ZERO,
        early_transcript: false,
        ended_by_hint: false,
        ended_by_model: false,
        interrupted: false,
        resumed: 0,
        to_first_packet: None,
        from_speech_end: None,
        heard_after: None,
        cost: Default::default(),
    }
}

/// The jobs among `out`.
fn jobs(out: &[Output]) -> Vec<&Submission> {
    out.iter()
        .filter_map(|o| match o {
            Output::Submit(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The id of the sound check among `out` (there must be one).
fn sound_job(out: &[Output]) -> u64 {
    jobs(out)
        .iter()
        .find_map(|s| match s.work {
            Work::Sound { id, .. } => Some(id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sound check in {out:?}"))
}

/// The transcript an utterance job carries (`None`: it is transcribed).
fn utterance_transcript(s: &Submission) -> Option<Option<String>> {
    match &s.work {
        Work::Utterance { transcript, .. } => Some(transcript.as_ref().map(|t| t.0.text.clone())),
        _ => None,
    }
}

#[test]
fn a_complete_pause_transcript_ends_the_turn_and_is_reused() {
    let mut s = Sim::new(ConversationConfig::default());
    s.at(1000);
    let out = s.event(pause(1, 1, 1000));
    let j = jobs(&out);
    assert_eq!(j.len(), 1);
    assert!(matches!(j[0].work, Work::Pause { id: 1, .. }));
    assert!(j[0].speculative, "a pause transcript is speculative");
    // The hangover must not end the turn before the words are in.
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ExtendTurn(1, d) if *d == Duration::from_millis(500))));
    s.at(1150);
    let out = s.speech(partial(1, "Am Dienstag um zehn.", TurnHint::Complete));
    assert!(matches!(&out[..], [Output::EndTurn(1)]));
    let before = s.conv.turn();
    let out = s.event(ended(Some(1), 1000));
    let j = jobs(&out);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].turn, before + 1, "a new turn");
    assert!(!j[0].speculative);
    assert_eq!(
        utterance_transcript(j[0]),
        Some(Some("Am Dienstag um zehn.".into()))
    );
    assert!(matches!(
        j[0].work,
        Work::Utterance {
            ended_by_hint: true,
            ..
        }
    ));
}

/// Regression: a pause transcript of an earlier silence answered a later
/// one (the caller had spoken on after "am").
#[test]
fn a_superseded_pause_transcript_is_not_used_for_a_later_silence() {
    let mut s = Sim::new(ConversationConfig::default());
    s.at(1000);
    s.event(pause(1, 1, 1000));
    // The same silence grows: a turn check, not a second transcript.
    s.at(1200);
    let out = s.event(pause(2, 1, 1000));
    let j = jobs(&out);
    assert!(j.is_empty(), "pause 1 is still being transcribed");
    // The caller speaks on; a new silence.
    s.at(2000);
    let out = s.event(pause(3, 3, 2000));
    assert!(matches!(jobs(&out)[0].work, Work::Pause { id: 3, .. }));
    assert_eq!(s.conv.latest_silence(), 3, "the workers drop pause 1's job");
    // Pause 1's words arrive late; the utterance ends at pause 3 before
    // its words are in.
    s.speech(partial(1, "am", TurnHint::Unfinished));
    s.at(2600);
    let out = s.event(ended(Some(3), 2000));
    assert!(jobs(&out).is_empty(), "waits for pause 3's transcript");
    let out = s.speech(partial(3, "am Dienstag um zehn", TurnHint::Unknown));
    let j = jobs(&out);
    assert_eq!(
        utterance_transcript(j[0]),
        Some(Some("am Dienstag um zehn".into()))
    );
}

/// Regression: a pause transcript that never came left the turn waiting.
#[test]
fn a_missing_pause_transcript_does_not_leave_the_turn_waiting() {
    let mut s = Sim::new(ConversationConfig::default());
    s.at(1000);
    s.event(pause(1, 1, 1000));
    s.at(1600);
    let out = s.event(ended(Some(1), 1000));
    assert!(jobs(&out).is_empty());
    let due = s.now + AWAIT_TRANSCRIPT;
    assert!(s.conv.poll_timeout().is_some_and(|t| t <= due));
    s.now = due - Duration::from_millis(1);
    assert!(jobs(&s.timeout()).is_empty(), "not before its time");
    s.now = due;
    let out = s.timeout();
    let j = jobs(&out);
    assert_eq!(j.len(), 1);
    assert_eq!(utterance_transcript(j[0]), Some(None), "transcribed afresh");
    // Its late transcript changes nothing now.
    assert!(jobs(&s.speech(partial(1, "zu spät", TurnHint::Complete))).is_empty());

    // A refused pause job: the utterance goes on at once.
    let mut s = Sim::new(ConversationConfig::default());
    s.at(1000);
    let out = s.event(pause(1, 1, 1000));
    let turn = jobs(&out)[0].turn;
    s.at(1600);
    s.event(ended(Some(1), 1000));
    s.conv.rejected(
        turn,
        &Work::Pause {
            id: 1,
            audio: vec![],
            silence: 0,
        },
        s.media,
        s.now,
    );
    let j = s.drain();
    assert!(matches!(j[0], Output::ExtendTurn(1, d) if d.is_zero()));
    assert_eq!(utterance_transcript(jobs(&j)[0]), Some(None));
}

/// A turn that ends waiting for its pause transcript says so (the pool
/// makes that job urgent); a pause job shed for another call's urgent work
/// sends the utterance to be transcribed at once.
#[test]
fn an_awaited_pause_is_named_and_a_shed_one_is_replaced_at_once() {
    let mut s = Sim::new(ConversationConfig::default());
    s.at(1000);
    let out = s.event(pause(1, 1, 1000));
    let turn = jobs(&out)[0].turn;
    assert!(jobs(&out)[0].speculative);
    assert_eq!(s.conv.awaited_pause(), crate::runtime::speech::NO_PAUSE);
    s.at(1600);
    s.event(ended(Some(1), 1000));
    assert_eq!(s.conv.awaited_pause(), 1);
    let out = s.speech(SpeechOut::Shed {
        turn,
        work: Work::Pause {
            id: 1,
            audio: vec![],
            silence: 0,
        },
    });
    let j = jobs(&out);
    assert_eq!(j.len(), 1);
    assert_eq!(utterance_transcript(j[0]), Some(None), "transcribed afresh");
    assert!(!j[0].speculative, "the caller waits on it");
    assert_eq!(s.conv.awaited_pause(), crate::runtime::speech::NO_PAUSE);
}

/// Regression: the filler counted from the end of the turn (held open by a
/// slow transcript), not from the caller's last word.
#[test]
fn the_filler_counts_from_the_callers_last_word() {
    let mut s = Sim::new(ConversationConfig::default());
    // The caller fell silent at 2.0 s; the turn was held open to 3.2 s.
    s.at(3200);
    s.event(ended(None, 2000));
    let due = s.conv.poll_timeout().expect("the filler's deadline");
    assert_eq!(due, s.t0 + Duration::from_millis(3000));
    let out = s.timeout();
    assert!(matches!(&out[..], [Output::Filler]), "{out:?}");
    assert_eq!(s.conv.summary().fillers, 1);
    s.at(5000);
    assert!(s.timeout().is_empty(), "once per turn");

    // A reply in time: no filler.
    let mut s = Sim::new(ConversationConfig::default());
    s.at(3200);
    s.event(ended(None, 3000));
    let turn = s.conv.turn();
    s.at(3500);
    s.speech(SpeechOut::Audio(reply(turn, "Gern.")));
    s.at(4500);
    assert!(!s.timeout().iter().any(|o| matches!(o, Output::Filler)));
}

#[test]
fn a_stop_barge_in_drops_the_reply_and_its_action() {
    let mut s = Sim::stop_mode();
    s.greeted("Auf Wiederhören.", Some(Action::Hangup));
    let turn = s.conv.turn();
    s.media.speaking = false;
    let out = s.event(CallEvent::BargeIn { at: position(0) });
    assert!(out.is_empty(), "the engine already stopped it");
    assert_eq!(s.conv.turn(), turn + 1, "its work is stale");
    assert!(s.conv.summary().turns[0].interrupted);
    assert!(s.event(CallEvent::PlayoutFinished).is_empty(), "no hangup");
}

#[test]
fn a_backchannel_over_a_reply_resumes_it_and_takes_no_turn() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    let turn = s.conv.turn();
    s.at(1000);
    assert!(s.barge_in().is_empty(), "paused, undecided");
    assert_eq!(s.conv.turn(), turn, "the reply's turn goes on");
    s.at(1300);
    let out = s.event(pause(5, 5, 1180));
    let j = jobs(&out);
    assert!(matches!(j[0].work, Work::Sound { .. }));
    assert!(!j[0].speculative);
    let id = match j[0].work {
        Work::Sound { id, .. } => id,
        _ => unreachable!(),
    };
    assert!(out.iter().any(|o| matches!(o, Output::ExtendTurn(5, _))));
    s.at(1550);
    let out = s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id,
        heard: "Mhm.".into(),
    });
    assert!(
        matches!(&out[..], [Output::ExtendTurn(5, d)] if d.is_zero()),
        "{out:?}"
    );
    let out = s.event(ended(Some(5), 1180));
    assert!(
        matches!(&out[..], [Output::Resume(ResumeFrom::SentenceStart)]),
        "{out:?}"
    );
    assert_eq!(s.conv.turn(), turn, "no turn taken");
    let summary = s.conv.into_summary();
    let o = &summary.overlaps[0];
    assert_eq!((o.outcome, o.why), ("resumed", "backchannel"));
    assert_eq!(o.paused, Duration::from_millis(550));
    assert_eq!(summary.turns[0].resumed, 1);
    assert!(!summary.turns[0].interrupted);
}

#[test]
fn words_over_a_reply_drop_it_and_are_answered() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    let turn = s.conv.turn();
    s.at(1000);
    s.barge_in();
    s.at(1300);
    let out = s.event(pause(5, 5, 1180));
    let id = sound_job(&out);
    // The sound ends before its transcript is back.
    s.at(1700);
    assert!(s.event(ended(Some(5), 1180)).is_empty());
    s.at(1750);
    let out = s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id,
        heard: "Nein, am Donnerstag.".into(),
    });
    assert!(matches!(out[0], Output::Stop), "{out:?}");
    let j = jobs(&out);
    assert_eq!(j.len(), 1, "answered as a turn");
    assert!(j[0].turn > turn);
    assert_eq!(
        utterance_transcript(j[0]),
        Some(None),
        "decoded with the dialogue's expectation"
    );
    let summary = s.conv.into_summary();
    assert_eq!(
        (summary.overlaps[0].outcome, summary.overlaps[0].why),
        ("dropped", "speech")
    );
    assert!(summary.turns[0].interrupted);
}

#[test]
fn sound_that_runs_on_takes_the_turn_at_the_commit_bound() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    let turn = s.conv.turn();
    s.at(1000);
    s.barge_in();
    assert_eq!(
        s.conv.poll_timeout(),
        Some(s.t0 + Duration::from_millis(1700))
    );
    s.at(1699);
    assert!(s.timeout().is_empty());
    s.at(1700);
    let out = s.timeout();
    assert!(matches!(&out[..], [Output::Stop]), "{out:?}");
    assert_eq!(s.conv.turn(), turn + 1);
    // The caller's speech then goes the usual way.
    s.at(2500);
    let out = s.event(pause(9, 9, 2380));
    assert!(matches!(jobs(&out)[0].work, Work::Pause { id: 9, .. }));
    assert_eq!(s.conv.summary().overlaps[0].why, "long");
}

#[test]
fn a_yes_over_the_end_of_a_question_answers_it() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted("Soll ich den Termin eintragen?", None);
    s.at(1000);
    s.media.queued = Duration::from_millis(300);
    s.barge_in();
    s.at(1300);
    let out = s.event(pause(5, 5, 1180));
    let id = sound_job(&out);
    s.at(1700);
    s.event(ended(Some(5), 1180));
    let out = s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id,
        heard: "Ja.".into(),
    });
    assert!(matches!(out[0], Output::Stop));
    assert_eq!(jobs(&out).len(), 1, "the yes is the answer");
    assert_eq!(s.conv.summary().overlaps[0].why, "end");
}

#[test]
fn our_own_echo_and_noise_resume_the_reply() {
    for (heard, why) in [
        ("für welchen Tag", "echo"),
        ("[Husten]", "noise"),
        ("", "noise"),
    ] {
        let mut s = Sim::new(ConversationConfig {
            barge_in: BargeIn::Resume {
                from: ResumeFrom::Position,
                commit_after: Duration::from_millis(700),
                min_rest: Duration::from_millis(400),
            },
            ..ConversationConfig::default()
        });
        s.greeted(REPLY, None);
        s.at(1000);
        s.barge_in();
        s.at(1200);
        let out = s.event(pause(5, 5, 1080));
        let id = sound_job(&out);
        s.at(1500);
        s.event(ended(Some(5), 1080));
        let out = s.speech(SpeechOut::Sound {
            hint: TurnHint::Unknown,
            id,
            heard: heard.into(),
        });
        assert!(
            matches!(&out[..], [Output::Resume(ResumeFrom::Position)]),
            "{heard:?}: {out:?}"
        );
        assert_eq!(s.conv.summary().overlaps[0].why, why);
    }
}

#[test]
fn a_pending_hangup_survives_a_resumed_reply() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(
        "Vielen Dank für Ihren Anruf. Auf Wiederhören.",
        Some(Action::Hangup),
    );
    s.at(1000);
    s.barge_in();
    s.at(1300);
    let out = s.event(pause(5, 5, 1180));
    let id = sound_job(&out);
    s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id,
        heard: "Okay.".into(),
    });
    s.event(ended(Some(5), 1180));
    s.media.paused = false;
    let out = s.event(CallEvent::PlayoutFinished);
    assert!(matches!(&out[..], [Output::Act(Action::Hangup)]), "{out:?}");
    assert_eq!(s.conv.summary().ended_by, "hangup");
}

#[test]
fn a_key_over_a_paused_reply_drops_it() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    s.at(1000);
    s.barge_in();
    s.at(1100);
    s.conv.handle_dtmf("1", s.media, s.now);
    let out = s.drain();
    assert!(matches!(out[0], Output::Stop));
    assert!(matches!(jobs(&out)[0].work, Work::Dtmf(ref d) if d == "1"));
    let summary = s.conv.into_summary();
    assert_eq!(summary.overlaps[0].why, "keys");
    assert!(summary.turns[0].interrupted);
    // Nothing about the sound is pending any more.
}

#[test]
fn an_unanswered_sound_check_gives_the_caller_the_turn() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    s.at(1000);
    s.barge_in();
    s.at(1300);
    s.event(pause(5, 5, 1180));
    assert_eq!(s.conv.poll_timeout(), Some(s.now + AWAIT_SOUND));
    s.now += AWAIT_SOUND;
    let out = s.timeout();
    assert!(matches!(out[0], Output::Stop), "dropped");
    // The sound's pause gets the early transcript any pause gets.
    let j = jobs(&out);
    assert!(
        matches!(j[..], [s] if matches!(s.work, Work::Pause { id: 5, .. }) && s.speculative),
        "{j:?}"
    );
    assert!(matches!(out.last(), Some(Output::ExtendTurn(5, _))));
    assert_eq!(s.conv.summary().overlaps[0].why, "timeout");
}

#[test]
fn a_machines_greeting_over_our_message_does_not_pause_it() {
    let mut s = Sim::new(ConversationConfig::default());
    s.conv.wait_for_answer();
    s.conv.leave_message();
    let out = s.drain();
    assert!(matches!(&out[..], [Output::Message]));
    s.media.speaking = true;
    let out = s.barge_in();
    assert!(
        matches!(&out[..], [Output::Resume(ResumeFrom::Position)]),
        "{out:?}"
    );
    assert!(jobs(&s.event(pause(1, 1, 500))).is_empty(), "not listening");
    s.media.paused = false;
    let out = s.event(CallEvent::PlayoutFinished);
    assert!(matches!(&out[..], [Output::Act(Action::Hangup)]));
    assert_eq!(s.conv.summary().outcome.as_deref(), Some("message_left"));
}

#[test]
fn a_reply_behind_the_filler_is_dated_when_the_filler_ends() {
    let mut s = Sim::new(ConversationConfig::default());
    s.at(3000);
    s.event(ended(None, 2000));
    s.timeout(); // the filler
    s.media.speaking = true;
    s.media.queued = Duration::from_millis(800);
    let turn = s.conv.turn();
    s.at(3100);
    s.speech(SpeechOut::Answered(Box::new(record(turn, "Gern.")), None));
    let out = s.speech(SpeechOut::Audio(reply(turn, "Gern.")));
    assert!(matches!(&out[..], [Output::Speak(_)]));
    let r = &s.conv.summary().turns[0];
    assert_eq!(r.from_speech_end, Some(Duration::from_millis(1900)));
}

#[test]
fn feedback_that_goes_on_after_its_pause_is_checked_again_whole() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    let turn = s.conv.turn();
    s.at(1000);
    s.barge_in();
    s.at(1200);
    let out = s.event(pause(5, 5, 1080));
    let first = sound_job(&out);
    s.at(1400);
    // "Ja" was no turn; but the caller went on before it could be ended.
    let out = s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id: first,
        heard: "Ja.".into(),
    });
    assert!(matches!(&out[..], [Output::ExtendTurn(5, d)] if d.is_zero()));
    s.at(1700);
    let out = s.event(pause(7, 7, 1580));
    let second = sound_job(&out);
    assert_ne!(first, second);
    s.at(1900);
    let out = s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id: second,
        heard: "Ja, genau.".into(),
    });
    assert!(matches!(&out[..], [Output::ExtendTurn(7, d)] if d.is_zero()));
    let out = s.event(ended(Some(7), 1580));
    assert!(matches!(&out[..], [Output::Resume(_)]), "{out:?}");
    assert_eq!(s.conv.turn(), turn);

    // Sound after sound for longer than twice the commit bound: a turn.
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted(REPLY, None);
    s.at(1000);
    s.barge_in();
    s.at(1200);
    s.event(pause(5, 5, 1080));
    s.at(2500);
    let out = s.event(pause(9, 9, 2380));
    assert!(matches!(out[0], Output::Stop), "{out:?}");
    assert!(matches!(jobs(&out)[0].work, Work::Pause { id: 9, .. }));
    assert_eq!(s.conv.summary().overlaps[0].why, "long");
}

/// A sound whose utterance ended while its transcript was awaited, then the
/// wait ran out (or the caller spoke again): the utterance is answered,
/// not lost with the dropped reply.
#[test]
fn an_ended_sound_is_answered_when_the_reply_is_dropped_without_a_verdict() {
    for again in [false, true] {
        let mut s = Sim::new(ConversationConfig::default());
        s.greeted(REPLY, None);
        s.at(1000);
        s.barge_in();
        s.at(1300);
        s.event(pause(5, 5, 1180));
        s.at(1700);
        assert!(s.event(ended(Some(5), 1180)).is_empty());
        let out = if again {
            s.at(1900);
            s.event(CallEvent::SpeechStarted {
                at: position(1900),
                barge_in: false,
            })
        } else {
            s.now += AWAIT_SOUND;
            s.timeout()
        };
        assert!(matches!(out[0], Output::Stop), "{out:?}");
        let j = jobs(&out);
        assert_eq!(j.len(), 1, "the sound's utterance is answered: {out:?}");
        assert_eq!(utterance_transcript(j[0]), Some(None));
    }
}

/// "Nein." over a confirmation: the words take the turn and, complete as
/// an answer, end it at the sound's pause (the old path's speed: no second
/// decode), and the transcript is reused for the answer.
#[test]
fn a_complete_answer_over_a_reply_ends_the_turn_at_its_pause() {
    let mut s = Sim::new(ConversationConfig::default());
    s.greeted("Ich trage Sie ein für Dienstag. Ist das richtig?", None);
    s.at(1000);
    s.barge_in();
    s.at(1300);
    let out = s.event(pause(5, 5, 1180));
    let id = sound_job(&out);
    let out = s.speech(SpeechOut::Sound {
        id,
        heard: "Nein.".into(),
        hint: TurnHint::Complete,
    });
    assert!(matches!(out[0], Output::Stop), "{out:?}");
    assert!(jobs(&out).is_empty(), "no second decode: {out:?}");
    assert!(matches!(out.last(), Some(Output::EndTurn(5))), "{out:?}");
    let out = s.event(ended(Some(5), 1180));
    let j = jobs(&out);
    assert_eq!(utterance_transcript(j[0]), Some(Some("Nein.".into())));
}

#[test]
fn a_caller_who_begins_between_two_sentences_holds_the_rest_of_the_reply() {
    let mut s = Sim::new(ConversationConfig::default());
    s.conv.start(s.now);
    s.drain();
    let turn = s.conv.turn();
    // The first sentence plays out; the second is still being synthesized.
    s.speech(SpeechOut::Audio(reply(
        turn,
        "Praxis Doktor Sommer, guten Tag.",
    )));
    s.media.speaking = true;
    s.at(1500);
    s.media.speaking = false;
    let out = s.event(CallEvent::PlayoutFinished);
    assert!(out.is_empty(), "not the reply's end: {out:?}");
    // The caller begins in the gap: the engine saw nothing to barge into.
    s.at(1600);
    let out = s.event(CallEvent::SpeechStarted {
        at: position(1480),
        barge_in: false,
    });
    assert!(out.is_empty(), "{out:?}");
    // The second sentence (2 s) comes while the sound is judged: held back.
    let mut second = reply(turn, "Hier spricht der Assistent.");
    second.samples = vec![0.0; 16000];
    let out = s.speech(SpeechOut::Audio(second));
    assert!(out.is_empty(), "held while the sound is judged: {out:?}");
    s.speech(SpeechOut::Answered(
        Box::new(record(
            turn,
            "Praxis Doktor Sommer, guten Tag. Hier spricht der Assistent.",
        )),
        None,
    ));
    // It was a "mhm": the reply goes on with the held sentence.
    s.at(1900);
    let out = s.event(pause(5, 5, 1800));
    let id = sound_job(&out);
    s.at(2100);
    s.speech(SpeechOut::Sound {
        hint: TurnHint::Unknown,
        id,
        heard: "Mhm.".into(),
    });
    let out = s.event(ended(Some(5), 1800));
    assert!(
        matches!(&out[..], [Output::Resume(_), Output::Speak(r)] if r.text == "Hier spricht der Assistent."),
        "{out:?}"
    );
    assert_eq!(s.conv.turn(), turn, "no turn taken");
    let summary = s.conv.into_summary();
    assert_eq!(summary.barge_ins.len(), 1);
    assert_eq!(summary.overlaps[0].outcome, "resumed");
}

#[test]
fn words_between_two_sentences_drop_the_rest_of_the_reply() {
    let mut s = Sim::stop_mode();
    s.conv.start(s.now);
    s.drain();
    let turn = s.conv.turn();
    s.speech(SpeechOut::Audio(reply(
        turn,
        "Praxis Doktor Sommer, guten Tag.",
    )));
    s.at(1500);
    s.event(CallEvent::PlayoutFinished);
    s.at(1600);
    s.event(CallEvent::SpeechStarted {
        at: position(1480),
        barge_in: false,
    });
    assert_ne!(s.conv.turn(), turn, "the reply's turn is over");
    // Its next sentence is not spoken over the caller.
    let out = s.speech(SpeechOut::Audio(reply(turn, "Hier spricht der Assistent.")));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(s.conv.into_summary().barge_ins.len(), 1);
}

#[test]
fn a_reply_whose_audio_played_before_its_answer_came_ends_with_the_answer() {
    let mut s = Sim::new(ConversationConfig::default());
    s.conv.start(s.now);
    s.drain();
    let turn = s.conv.turn();
    s.speech(SpeechOut::Audio(reply(turn, "Auf Wiederhören.")));
    s.at(1500);
    assert!(s.event(CallEvent::PlayoutFinished).is_empty());
    // The answer (with its hang-up) comes after the audio has played.
    let out = s.speech(SpeechOut::Answered(
        Box::new(record(turn, "Auf Wiederhören.")),
        Some(Action::Hangup),
    ));
    assert!(
        matches!(&out[..], [Output::Act(Action::Hangup)]),
        "the action is carried out at once: {out:?}"
    );
}
