//! A provider section's own settings, in types of this crate: what the config file wrote, or what
//! an embedder set in code, without tying the public API to the YAML library that reads the file.

use std::fmt;

use serde_yaml::{Mapping, Value};

use super::ConfigError;

/// The settings of one provider section (every key but `type` and `name`), with `${VAR}` already
/// expanded. Read them with [`super::Fields`] ([`super::ProviderConfig::fields`]), which names
/// every problem by its key path.
///
/// Its `Debug` shows only the keys: values may be secrets.
///
/// ```
/// use dhaf_core::config::{SettingValue, Settings};
/// let mut s = Settings::from_yaml("url: https://hooks.example.com\nheaders: { X-Team: ops }").unwrap();
/// s.set("timeout", 10);
/// assert_eq!(s.get("timeout"), Some(SettingValue::from(10)));
/// assert_eq!(s.get("url").and_then(|v| v.as_str().map(str::to_string)).as_deref(), Some("https://hooks.example.com"));
/// assert_eq!(s.keys().collect::<Vec<_>>(), ["url", "headers", "timeout"]);
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Settings {
    map: Mapping,
}

impl Settings {
    /// No settings.
    pub fn new() -> Settings {
        Settings::default()
    }

    /// Settings written as a YAML mapping (`key: value` lines), as in a config file's provider
    /// section; `${VAR}` is not expanded here.
    pub fn from_yaml(text: &str) -> Result<Settings, ConfigError> {
        match serde_yaml::from_str::<Value>(text) {
            Ok(Value::Mapping(map)) => Ok(Settings { map }),
            Ok(Value::Null) => Ok(Settings::new()),
            Ok(_) => Err(ConfigError::at("", "must be a mapping of settings (key: value)")),
            Err(e) => Err(ConfigError::at("", format!("not valid YAML: {e}"))),
        }
    }

    /// Set `key` to `value`, as if written in the section.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<SettingValue>) {
        self.map.insert(Value::String(key.into()), value.into().into_yaml());
    }

    /// Remove `key`; returns its value, if it was set.
    pub fn remove(&mut self, key: &str) -> Option<SettingValue> {
        self.map.remove(key).map(SettingValue::from_yaml)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<SettingValue> {
        self.map.get(key).cloned().map(SettingValue::from_yaml)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The keys, in the order they were written.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.map.keys().map(key_text)
    }

    /// Every key with its value, in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = (String, SettingValue)> + '_ {
        self.map.iter().map(|(k, v)| (key_text(k), SettingValue::from_yaml(v.clone())))
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn from_mapping(map: Mapping) -> Settings {
        Settings { map }
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }
}

impl fmt::Debug for Settings {
    // Values may be secrets: only the keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys()).finish()
    }
}

impl<K: Into<String>, V: Into<SettingValue>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Settings {
        let mut s = Settings::new();
        for (k, v) in iter {
            s.set(k, v);
        }
        s
    }
}

/// A key as text (YAML allows keys of any type; settings name theirs with strings).
pub(crate) fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other).map(|t| t.trim().to_string()).unwrap_or_default(),
    }
}

/// One setting's value, for settings with a shape of their own ([`super::Fields::value`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SettingValue {
    /// Written empty (`key:`) or `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(Number),
    /// A string.
    String(String),
    /// A list.
    List(Vec<SettingValue>),
    /// A mapping, in the order written.
    Map(Vec<(String, SettingValue)>),
}

impl SettingValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SettingValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn from_yaml(v: Value) -> SettingValue {
        match v {
            Value::Null => SettingValue::Null,
            Value::Bool(b) => SettingValue::Bool(b),
            Value::Number(n) => SettingValue::Number(Number(n)),
            Value::String(s) => SettingValue::String(s),
            Value::Sequence(items) => SettingValue::List(items.into_iter().map(SettingValue::from_yaml).collect()),
            Value::Mapping(m) => SettingValue::Map(m.into_iter().map(|(k, v)| (key_text(&k), SettingValue::from_yaml(v))).collect()),
            // A YAML tag (`!secret x`) means nothing to dhaf: the value under it counts.
            Value::Tagged(t) => SettingValue::from_yaml(t.value),
        }
    }

    fn into_yaml(self) -> Value {
        match self {
            SettingValue::Null => Value::Null,
            SettingValue::Bool(b) => Value::Bool(b),
            SettingValue::Number(n) => Value::Number(n.0),
            SettingValue::String(s) => Value::String(s),
            SettingValue::List(items) => Value::Sequence(items.into_iter().map(SettingValue::into_yaml).collect()),
            SettingValue::Map(m) => Value::Mapping(m.into_iter().map(|(k, v)| (Value::String(k), v.into_yaml())).collect()),
        }
    }
}

/// A number setting: a whole number (signed or not) or a fraction.
#[derive(Clone, PartialEq)]
pub struct Number(serde_yaml::Number);

impl Number {
    /// The number, if it is a whole number that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.as_u64()
    }

    /// The number, if it is a whole number that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.0.as_i64()
    }

    /// The number as an `f64` (whole numbers too, rounded if they must be).
    pub fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<&str> for SettingValue {
    fn from(s: &str) -> SettingValue {
        SettingValue::String(s.into())
    }
}

impl From<String> for SettingValue {
    fn from(s: String) -> SettingValue {
        SettingValue::String(s)
    }
}

impl From<bool> for SettingValue {
    fn from(b: bool) -> SettingValue {
        SettingValue::Bool(b)
    }
}

macro_rules! number_from {
    ($($t:ty),*) => {$(
        impl From<$t> for SettingValue {
            fn from(n: $t) -> SettingValue {
                SettingValue::Number(Number(n.into()))
            }
        }
    )*};
}
number_from!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);

impl<T: Into<SettingValue>> From<Vec<T>> for SettingValue {
    fn from(items: Vec<T>) -> SettingValue {
        SettingValue::List(items.into_iter().map(Into::into).collect())
    }
}

impl From<Settings> for SettingValue {
    /// A nested section (`smtp:`, `headers:`).
    fn from(s: Settings) -> SettingValue {
        SettingValue::from_yaml(Value::Mapping(s.map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_shape_both_ways() {
        let yaml = "a: 1\nb: -2\nc: 0.5\nd: text\ne: [1, x]\nf: { g: true }\nh:\n";
        let s = Settings::from_yaml(yaml).unwrap();
        let got: Vec<(String, SettingValue)> = s.iter().collect();
        let back: Settings = got.clone().into_iter().collect();
        assert_eq!(back, s, "{got:?}");
        assert_eq!(s.get("a").unwrap(), SettingValue::from(1u64));
        assert_eq!(s.get("b").unwrap(), SettingValue::from(-2i64));
        assert_eq!(s.get("f").unwrap(), SettingValue::Map(vec![("g".into(), SettingValue::Bool(true))]));
        assert_eq!(s.get("h").unwrap(), SettingValue::Null);
        match s.get("c").unwrap() {
            SettingValue::Number(n) => assert_eq!((n.as_f64(), n.as_u64(), n.to_string()), (Some(0.5), None, "0.5".into())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_shows_keys_only() {
        let s = Settings::from_yaml("api-token: hunter2").unwrap();
        assert_eq!(format!("{s:?}"), r#"{"api-token"}"#);
    }

    #[test]
    fn what_is_no_mapping_is_refused() {
        let e = Settings::from_yaml("[1, 2]").unwrap_err();
        assert_eq!(e.problems[0].to_string(), "must be a mapping of settings (key: value)");
        assert!(Settings::from_yaml("").unwrap().is_empty());
    }
}
