//! Blocking HTTP clients for the speech threads (LLM, remote STT).

/// Builds a blocking client on a thread of its own: reqwest's blocking
/// client runs its own runtime, which may be neither built nor dropped
/// inside an async runtime, and `aiagc serve` configures its backends from
/// async code.
pub fn build_blocking(
    builder: reqwest::blocking::ClientBuilder,
) -> Result<reqwest::blocking::Client, String> {
    std::thread::spawn(move || builder.build().map_err(|e| e.to_string()))
        .join()
        .map_err(|_| "building the HTTP client panicked".to_owned())?
}
