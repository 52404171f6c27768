//! The frame path allocates nothing after warm-up: a counting global
//! allocator watches 10 s of steady two-way media (caller speech in, reply
//! out) through `receive`, `handle_timeout` and `poll_transmit`.

mod common;

use aiagc_engine::impair::RtpSender;
use aiagc_engine::{Call, CallConfig, Codec};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_frame_path_does_not_allocate() {
    for codec in [Codec::Ulaw, Codec::G722, Codec::Slin16, Codec::Opus] {
        let n = codec.frame_samples();
        let mut sender = RtpSender::new(codec, 7, 0, 99).unwrap();
        // Continuous voiced caller audio (no utterance ends inside the window;
        // the utterance buffer is sized for max_utterance up front).
        let packets: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                let pcm: Vec<i16> = (0..n)
                    .map(|k| {
                        let t = (i * n + k) as f32 / n as f32 / 50.0;
                        // Syllable-like 4 Hz envelope: a steady tone would be learned as noise.
                        let envelope = 0.55 + 0.45 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
                        (8000.0 * envelope * (((i * n + k) as f32) * 0.05).sin()) as i16
                    })
                    .collect();
                sender.packet(&pcm)
            })
            .collect();
        let t0 = Instant::now();
        let mut config = CallConfig::new(codec, 3);
        config.peer = Some(common::peer());
        // One utterance spans the whole window (an utterance ending hands
        // its buffer out: one allocation per turn, not per packet).
        config.endpoint.max_utterance = Duration::from_secs(60);
        // A pause hands the utterance so far to the speech workers (one
        // allocation per pause, like one per utterance end): off here, where
        // the frame path itself is measured.
        config.endpoint.pause = None;
        let mut call = Call::new(config, t0).unwrap();
        call.speak(&vec![0.1f32; 16000 * 30], 16000).unwrap();
        let mut sent = 0;
        for (i, p) in packets.iter().enumerate() {
            if i == 100 {
                COUNTING.store(true, Ordering::SeqCst); // after 2 s of warm-up
            }
            let now = t0 + Duration::from_millis(20 * i as u64);
            call.receive(common::peer(), p, now);
            call.handle_timeout(now);
            while let Some(t) = call.poll_transmit(now) {
                sent += t.data.len();
            }
            while call.poll_event().is_some() {}
        }
        COUNTING.store(false, Ordering::SeqCst);
        let count = ALLOCATIONS.swap(0, Ordering::SeqCst);
        assert!(sent > 0);
        assert!(call.stats().frames_played > 900);
        assert_eq!(count, 0, "{codec:?}: {count} allocations in 900 frames");
    }
}
