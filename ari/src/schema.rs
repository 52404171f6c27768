//! Checks JSON against the ARI resource description (Swagger 1.2 models in
//! `api-docs/`): required properties present, property types matching,
//! nested models and event inheritance (`Message` → `Event` → subtype)
//! followed. Used by tests to hold the simulator to Asterisk's shapes.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The models of a set of api-docs files.
pub struct Schema {
    models: HashMap<String, Value>,
    parents: HashMap<String, String>,
}

/// Why the api-docs could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// File not readable.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Not a resource description.
    #[error("{0}: {1}")]
    Json(String, serde_json::Error),
}

impl Schema {
    /// Loads every `*.json` resource description in `dir`.
    pub fn load(dir: &Path) -> Result<Self, SchemaError> {
        let mut models = HashMap::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| SchemaError::Io(dir.display().to_string(), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path.display().to_string();
                let text =
                    std::fs::read_to_string(&path).map_err(|e| SchemaError::Io(name.clone(), e))?;
                let doc: Value =
                    serde_json::from_str(&text).map_err(|e| SchemaError::Json(name, e))?;
                if let Some(m) = doc.get("models").and_then(Value::as_object) {
                    for (k, v) in m {
                        models.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut parents = HashMap::new();
        for (name, model) in &models {
            if let Some(subs) = model.get("subTypes").and_then(Value::as_array) {
                for s in subs.iter().filter_map(Value::as_str) {
                    parents.insert(s.to_owned(), name.clone());
                }
            }
        }
        Ok(Self { models, parents })
    }

    /// Whether a model of that name exists.
    pub fn has(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// Checks `value` against `model`; returns every violation found.
    pub fn validate(&self, model: &str, value: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.check_model(model, value, model, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_model(&self, model: &str, value: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(def) = self.models.get(model) else {
            errors.push(format!("{path}: unknown model {model}"));
            return;
        };
        let Some(obj) = value.as_object() else {
            errors.push(format!("{path}: expected {model} object, got {value}"));
            return;
        };
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let ty = prop.get("type").and_then(Value::as_str).unwrap_or("object");
                let required = prop
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                match obj.get(name) {
                    None | Some(Value::Null) if required => {
                        errors.push(format!("{path}.{name}: required {ty} missing"))
                    }
                    None | Some(Value::Null) => {}
                    Some(v) => self.check_type(ty, v, &format!("{path}.{name}"), errors),
                }
            }
        }
        if let Some(parent) = self.parents.get(model) {
            self.check_model(parent, value, path, errors);
        }
    }

    fn check_type(&self, ty: &str, v: &Value, path: &str, errors: &mut Vec<String>) {
        let ok = match ty {
            "string" | "Date" => v.is_string(),
            "int" | "long" => v.is_i64() || v.is_u64(),
            "double" => v.is_number(),
            "boolean" => v.is_boolean(),
            "object" => v.is_object(),
            _ => {
                if let Some(inner) = ty.strip_prefix("List[").and_then(|t| t.strip_suffix(']')) {
                    match v.as_array() {
                        Some(items) => {
                            for (i, item) in items.iter().enumerate() {
                                self.check_type(inner, item, &format!("{path}[{i}]"), errors);
                            }
                            true
                        }
                        None => false,
                    }
                } else if self.models.contains_key(ty) {
                    self.check_model(ty, v, path, errors);
                    true
                } else {
                    errors.push(format!("{path}: unknown type {ty}"));
                    true
                }
            }
        };
        if !ok {
            errors.push(format!("{path}: expected {ty}, got {v}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ari/api-docs"))
            .unwrap()
    }

    /// The real Asterisk's captured events satisfy the description, which
    /// validates the validator against ground truth.
    #[test]
    fn captured_events_match_the_api_docs() {
        let s = schema();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ari");
        for name in ["events_ulaw.json", "events_slin16.json", "events_dtmf.json"] {
            let events: Vec<Value> =
                serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
            for e in events {
                let kind = e["type"].as_str().unwrap();
                assert!(s.has(kind), "{kind}");
                s.validate(kind, &e)
                    .unwrap_or_else(|errs| panic!("{name} {kind}: {errs:?}"));
            }
        }
    }

    #[test]
    fn violations_are_reported() {
        let s = schema();
        let bad = serde_json::json!({"type": "StasisStart", "application": "aiagc", "timestamp": "t",
            "args": "not a list", "channel": {"id": 5}});
        let errs = s.validate("StasisStart", &bad).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("args")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("channel.id")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("channel.name: required")),
            "{errs:?}"
        );
        assert!(s.validate("NoSuchModel", &bad).is_err());
    }
}
