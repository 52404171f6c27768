//! The demo's booking system: the practice's appointment calendar behind
//! a loopback HTTP endpoint, as an operator's own system would be. The
//! demo's scenario books, moves and cancels through it (`[[tools]]`), so
//! an appointment exists there, not only in aiagc's record. The practice
//! has two treatment rooms: a time already booked twice is declined and
//! the caller asked for another.

use aiagc_dialogue::scenario::{Scenario, PRAXIS};
use aiagc_dialogue::tools::{ToolSpec, Toolbox};
use anyhow::{bail, Context, Result};
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Appointments the practice can take at the same time.
const ROOMS: usize = 2;

/// One appointment in the calendar.
#[derive(Debug, Clone, Serialize)]
pub struct Appointment {
    /// Booking number.
    pub id: String,
    /// `2026-12-03`.
    pub date: String,
    /// `14:30`.
    pub time: String,
    /// Caller id number.
    pub caller: String,
}

/// What the calendar holds and was asked.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Calendar {
    /// Appointments now.
    pub appointments: Vec<Appointment>,
    /// Requests by path (`book`, `move`, `cancel`) and their answer.
    pub requests: Vec<(String, bool)>,
    next: u32,
}

/// The running booking system.
pub struct BookingSystem {
    /// Base URL.
    pub url: String,
    calendar: Arc<Mutex<Calendar>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BookingSystem {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn field(args: &Value, name: &str) -> String {
    args.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn handle(
    State(cal): State<Arc<Mutex<Calendar>>>,
    Path(action): Path<String>,
    Json(args): Json<Value>,
) -> Json<Value> {
    let mut c = cal.lock().unwrap_or_else(|p| p.into_inner());
    let (date, time, caller) = (
        field(&args, "date"),
        field(&args, "time"),
        field(&args, "caller"),
    );
    // Two rooms: a third appointment at the same time is refused.
    let taken = |c: &Calendar| {
        c.appointments
            .iter()
            .filter(|a| a.date == date && a.time == time)
            .count()
            >= ROOMS
    };
    let answer = match action.as_str() {
        "book" if taken(&c) => {
            json!({"ok": false, "say": "Dieser Termin ist leider schon vergeben."})
        }
        "book" => json!({"ok": true, "booking_id": c.add(date, time, caller)}),
        "move" if taken(&c) => {
            json!({"ok": false, "say": "Dieser Termin ist leider schon vergeben."})
        }
        "move" => {
            let old = field(&args, "old_date");
            // The caller's appointment on the old day; a caller unknown
            // to the calendar (the demo's first call) gets a new one.
            match c
                .appointments
                .iter_mut()
                .find(|a| a.date == old && (caller.is_empty() || a.caller == caller))
            {
                Some(a) => {
                    a.date = date;
                    a.time = time;
                    json!({"ok": true, "booking_id": a.id})
                }
                None => json!({"ok": true, "booking_id": c.add(date, time, caller)}),
            }
        }
        "cancel" => {
            let before = c.appointments.len();
            c.appointments
                .retain(|a| !(a.date == date && (caller.is_empty() || a.caller == caller)));
            json!({"ok": true, "removed": before - c.appointments.len()})
        }
        _ => json!({"ok": false}),
    };
    let ok = answer["ok"] == true;
    c.requests.push((action, ok));
    Json(answer)
}

impl Calendar {
    /// A new appointment; its booking number.
    fn add(&mut self, date: String, time: String, caller: String) -> String {
        self.next += 1;
        let id = format!("T-{}", 1000 + self.next);
        self.appointments.push(Appointment {
            id: id.clone(),
            date,
            time,
            caller,
        });
        id
    }
}

impl BookingSystem {
    /// Listens on a free loopback port.
    pub async fn start() -> Result<Self> {
        let calendar = Arc::new(Mutex::new(Calendar::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{action}", axum::routing::post(handle))
            .with_state(calendar.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            calendar,
            task,
        })
    }

    /// What the calendar holds now.
    pub fn calendar(&self) -> Calendar {
        self.calendar
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tools pointing at it.
    pub fn tools(&self) -> Result<Toolbox> {
        let string = json!({"type": "string"});
        let spec = |name: &str, props: &[&str], required: &[&str]| ToolSpec {
            name: name.into(),
            description: format!("{name} im Terminkalender der Praxis"),
            parameters: json!({"type": "object",
                "properties": props.iter().map(|p| (p.to_string(), string.clone())).collect::<serde_json::Map<_, _>>(),
                "required": required}),
            url: format!("{}/{name}", self.url),
            method: "POST".into(),
            timeout: Duration::from_secs(3),
            headers: vec![],
        };
        Ok(Toolbox::new(vec![
            spec("book", &["date", "time", "caller"], &["date", "time"]),
            spec(
                "move",
                &["old_date", "date", "time", "caller"],
                &["date", "time"],
            ),
            spec("cancel", &["date", "caller"], &["date"]),
        ])?)
    }
}

/// The practice scenario with its confirmations going through the
/// booking system (`tool = …` on the three committing transitions).
pub fn scenario() -> Result<Arc<Scenario>> {
    let mut text = PRAXIS.to_owned();
    for (outcome, tool) in [
        ("booked", "book"),
        ("moved", "move"),
        ("cancelled", "cancel"),
    ] {
        let from = format!("outcome = \"{outcome}\"");
        if text.matches(&from).count() != 1 {
            bail!("the practice scenario has no single `{from}` to book through");
        }
        text = text.replace(&from, &format!("tool = \"{tool}\", {from}"));
    }
    Scenario::from_toml(&text).context("the practice scenario with tools")
}
