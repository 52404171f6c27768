//! Any aiagc.toml: it parses into a configuration or is rejected with an
//! error, and a parsed one validates or is rejected, never a panic; the
//! explanation never shows a secret.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut c) = config::Config::from_toml(text) else {
        return;
    };
    let _ = c.validate();
    let _ = c.port_range();
    let _ = c.drain_to();
    let _ = c.stt_remote();
    let _ = c.workers();
    let _ = c.delivery();
    let _ = c.outbound();
    let _ = c.tool_specs(&|_| None);
    c.ari.password = "fuzz-secret-XYZ".into();
    c.delivery.secret = "fuzz-secret-XYZ".into();
    let shown = c.explain(&Default::default());
    assert!(!shown.contains("fuzz-secret-XYZ"));
    assert!(!format!("{c:?}").contains("fuzz-secret-XYZ"));
});
