//! The line as it is on disk: one flat struct of optional fields, deserialised without copying.
//!
//! Strings borrow from the line buffer where they have no escapes, and values stay as their raw JSON
//! text (`&RawValue`): building a `serde_json::Value` tree for every sibling of every read would cost
//! more than the rest of the checker. [`Wire::classify`] is the one place that decides what a line is
//! and whether it has the fields its kind needs; both the owned [`Event`] and the compact
//! [`History`](super::History) are built from a classified `Wire`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::event::{
    Body, ClientF, Clock, Completion, Dot, Event, Op, Outcome, Phase, ProcessNo, ReplicaState,
    Sibling, Version, WriteOp,
};

/// A string borrowed from the line where it can be (no escapes), owned where it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// Who acted: a client process number, or the nemesis, or the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireProcess {
    Client(ProcessNo),
    Nemesis,
    Harness,
}

impl<'de> Deserialize<'de> for WireProcess {
    /// An integer however it is spelt (`3`, `3.0`, `3e0`: one JSON number), or `"nemesis"` or
    /// `"harness"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WireProcess, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        if text.starts_with('"') {
            let name: Cow<'_, str> = serde_json::from_str(text).map_err(de::Error::custom)?;
            return match name.as_ref() {
                "nemesis" => Ok(WireProcess::Nemesis),
                "harness" => Ok(WireProcess::Harness),
                other => Err(de::Error::custom(format!(
                    "process {other:?} is not an integer, \"nemesis\" or \"harness\""
                ))),
            };
        }
        // The usual spelling, plain digits, without the exact reading's allocation.
        if (1..=19).contains(&text.len()) && text.bytes().all(|c| c.is_ascii_digit()) {
            let n: u64 = text.parse().map_err(de::Error::custom)?;
            return Ok(WireProcess::Client(ProcessNo::from(n)));
        }
        let (negative, magnitude) = integer(text, "process")?;
        let n = ProcessNo::try_from(magnitude)
            .ok()
            .map(|m| if negative { -m } else { m })
            .ok_or_else(|| de::Error::custom(format!("process {text} is too large")))?;
        Ok(WireProcess::Client(n))
    }
}

/// A JSON number that is an integer, exactly, however it is spelt (`2`, `2.0`, `20e-1`, `-0`):
/// (whether it is below zero, its magnitude). The spelling of a number does not count
/// (history-format.md), but a number that is not an integer (`2.5`, `3.0000000000000001`) is not
/// one rounded: an error naming `what`, as is anything that is not a number or is past 128 bits.
/// Read from the number's text, never through an `f64`, which would round.
fn integer<E: de::Error>(text: &str, what: &str) -> Result<(bool, u128), E> {
    let not_integer = || E::custom(format!("{what} {text} is not an integer"));
    let too_large = || E::custom(format!("{what} {text} is too large"));
    let b = text.as_bytes();
    let (negative, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 {
        return Err(not_integer());
    }
    let (int, mut rest) = b.split_at(int_len);
    let mut frac: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
        (frac, rest) = after.split_at(n);
    }
    // The exponent, clamped at `canon::EXPONENT_MAX`: a long run of zeros can bring a huge
    // exponent back to an integer, but no text holds 10^15 of them, so the clamp changes no
    // verdict. The loops below end within 39 steps anyway.
    let mut exp: i64 = 0;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (sign, digits) = match after.split_first() {
            Some((b'-', d)) => (-1, d),
            Some((b'+', d)) => (1, d),
            _ => (1, after),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(not_integer());
        }
        for &c in digits {
            exp = (exp * 10 + i64::from(c - b'0')).min(super::canon::EXPONENT_MAX);
        }
        exp *= sign;
        rest = &[];
    }
    if !rest.is_empty() {
        return Err(not_integer());
    }
    // The value is digits × 10^scale.
    let mut digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let mut scale = exp - frac.len() as i64;
    let leading = digits.iter().take_while(|&&c| c == b'0').count();
    digits.drain(..leading);
    if digits.is_empty() {
        return Ok((false, 0));
    }
    while scale < 0 && digits.last() == Some(&b'0') {
        digits.pop();
        scale += 1;
    }
    if scale < 0 {
        return Err(not_integer());
    }
    let mut value: u128 = 0;
    for &c in &digits {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(c - b'0')))
            .ok_or_else(too_large)?;
    }
    for _ in 0..scale {
        value = value.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok((negative, value))
}

/// A non-negative integer that fits 64 bits, however it is spelt; anything else is an error naming
/// `what` (a negative index, a fractional counter).
fn unsigned<E: de::Error>(text: &str, what: &str) -> Result<u64, E> {
    // The usual spelling, plain digits, without the exact reading's allocation.
    if (1..=19).contains(&text.len()) && text.bytes().all(|c| c.is_ascii_digit()) {
        return text.parse().map_err(E::custom);
    }
    match integer::<E>(text.trim(), what)? {
        (true, _) => Err(E::custom(format!(
            "{what} {} is negative: this checker reads {what} values from 0 up",
            text.trim()
        ))),
        (false, v) => {
            u64::try_from(v).map_err(|_| E::custom(format!("{what} {} is too large", text.trim())))
        }
    }
}

/// A JSON number's text as an exact integer (below zero, magnitude), or `None` when it is no
/// integer (or no number).
pub(crate) fn exact_integer(text: &str) -> Option<(bool, u128)> {
    integer::<serde_json::Error>(text.trim(), "").ok()
}

/// A JSON number's text as an exact integer from 0 up that fits 64 bits, or `None`.
pub(crate) fn exact_unsigned(text: &str) -> Option<u64> {
    unsigned::<serde_json::Error>(text.trim(), "").ok()
}

fn index_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    unsigned(<&'de RawValue>::deserialize(d)?.get(), "index")
}

fn time_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    unsigned(<&'de RawValue>::deserialize(d)?.get(), "time")
}

/// A dot's or a clock entry's counter: it counts events, so it is a whole number from 0 up.
fn counter_field<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    unsigned(<&'de RawValue>::deserialize(d)?.get(), "counter")
}

/// The `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WireType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// A vector clock as it appears on the line, in the line's order (not yet sorted).
#[derive(Debug, Default)]
pub(crate) struct WireClock<'a>(pub Vec<(Str<'a>, u64)>);

impl<'de: 'a, 'a> Deserialize<'de> for WireClock<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WireClock<'a>, D::Error> {
        struct ClockVisitor;
        impl<'de> Visitor<'de> for ClockVisitor {
            type Value = WireClock<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vector clock: an object of node name to counter")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireClock<'de>, A::Error> {
                let mut entries = Vec::new();
                while let Some((node, counter)) = map.next_entry::<Str<'de>, &'de RawValue>()? {
                    entries.push((node, unsigned(counter.get(), "counter")?));
                }
                Ok(WireClock(entries))
            }
        }
        d.deserialize_map(ClockVisitor)
    }
}

/// A dot `[node, counter]`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireDot<'a>(
    #[serde(borrow)] pub Str<'a>,
    #[serde(deserialize_with = "counter_field")] pub u64,
);

/// A sibling of a read or replica state.
#[derive(Debug, Deserialize)]
pub(crate) struct WireSibling<'a> {
    #[serde(borrow)]
    pub write: Str<'a>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub dot: Option<WireDot<'a>>,
    #[serde(borrow, default)]
    pub clock: Option<WireClock<'a>>,
}

/// One line: every field any event may have. Unknown fields are ignored, so that a newer writer's
/// extra fields do not break an older checker. An optional field given as `null` counts as absent (a
/// required one given as `null` is missing, except `value`, where `null` is a delete's value); a field
/// of the wrong type is an error where the event's kind has that field (a line that fails only on a
/// field its kind does not have is read again without it: `parse.rs`).
#[derive(Debug, Deserialize)]
pub(crate) struct Wire<'a> {
    /// An integer however it is spelt (`12`, `12.0`), from 0 up.
    #[serde(deserialize_with = "index_field")]
    pub index: u64,
    #[serde(deserialize_with = "time_field")]
    pub time: u64,
    pub process: WireProcess,
    #[serde(rename = "type")]
    pub ty: WireType,
    #[serde(borrow)]
    pub f: Str<'a>,
    #[serde(borrow, default)]
    pub key: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub node: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub write: Option<Str<'a>>,
    /// `Some` whenever the field is there, `null` included (a delete writes `null`).
    #[serde(borrow, default, deserialize_with = "present")]
    pub value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub observed: Option<Vec<Str<'a>>>,
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub values: Option<Vec<WireSibling<'a>>>,
    #[serde(borrow, default)]
    pub dot: Option<WireDot<'a>>,
    #[serde(borrow, default)]
    pub clock: Option<WireClock<'a>>,
    /// A config event's format version given beside its `value` (history-format.md: "A v2 history
    /// says `"history_format":2` in its config event"); inside `value` is the usual place.
    #[serde(borrow, default)]
    pub history_format: Option<&'a RawValue>,
}

/// Keeps a present `null` as `Some`, unlike `Option`'s own deserialisation.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// What a line is, once [`Wire::classify`] has checked that it has the fields its kind needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Invoke(ClientF),
    Complete(Outcome, ClientF),
    Nemesis,
    Phase,
    ReplicaState,
    Config,
    /// A harness event this version of the format does not name: skipped with a warning.
    UnknownHarness,
}

fn client_f(f: &str) -> Result<ClientF, String> {
    match f {
        "get" => Ok(ClientF::Get),
        "put" => Ok(ClientF::Put),
        "delete" => Ok(ClientF::Delete),
        other => Err(format!(
            "unknown client operation f={other:?} (expected get, put or delete)"
        )),
    }
}

impl<'a> Wire<'a> {
    /// Decides what this line is and checks the fields that kind requires.
    pub(crate) fn classify(&self) -> Result<Class, String> {
        match self.process {
            WireProcess::Client(process) => {
                let f = client_f(self.f.as_str())?;
                if self.key.is_none() {
                    return Err(format!("client event of process {process} has no key"));
                }
                match self.ty {
                    WireType::Invoke => {
                        if f != ClientF::Get {
                            if self.write.is_none() {
                                return Err(format!("{} invoke has no write id", f.as_str()));
                            }
                            match self.value {
                                None => return Err(format!("{} invoke has no value", f.as_str())),
                                Some(v) if f == ClientF::Delete && v.get().trim() != "null" => {
                                    return Err("a delete's value must be null".to_owned());
                                }
                                Some(_) => {}
                            }
                            if self.observed.is_none() {
                                return Err(format!(
                                    "{} invoke has no observed list (required, empty for a blind write)",
                                    f.as_str()
                                ));
                            }
                        }
                        Ok(Class::Invoke(f))
                    }
                    WireType::Ok | WireType::Fail | WireType::Info => {
                        let outcome = match self.ty {
                            WireType::Ok => Outcome::Ok,
                            WireType::Fail => Outcome::Fail,
                            _ => Outcome::Info,
                        };
                        if f == ClientF::Get && outcome == Outcome::Ok && self.values.is_none() {
                            return Err("get ok has no values".to_owned());
                        }
                        for s in self.values.iter().flatten() {
                            if s.value.is_none() {
                                return Err(format!("sibling {:?} has no value", s.write.as_str()));
                            }
                        }
                        Ok(Class::Complete(outcome, f))
                    }
                }
            }
            WireProcess::Nemesis => {
                if self.ty != WireType::Info {
                    return Err("a nemesis event must have type info".to_owned());
                }
                Ok(Class::Nemesis)
            }
            WireProcess::Harness => {
                if self.ty != WireType::Info {
                    return Err("a harness event must have type info".to_owned());
                }
                match self.f.as_str() {
                    // A phase or config event's `value` is not among the page's required fields:
                    // with none, a phase names no phase and a config states no setting.
                    "phase" => match self.value.map(|v| serde_json::from_str::<String>(v.get())) {
                        None | Some(Ok(_)) => Ok(Class::Phase),
                        Some(Err(_)) => Err("a phase event's value must be a string".to_owned()),
                    },
                    "replica-state" => {
                        if self.key.is_none() || self.node.is_none() || self.values.is_none() {
                            return Err("replica-state needs key, node and values".to_owned());
                        }
                        for s in self.values.iter().flatten() {
                            if s.value.is_none() {
                                return Err(format!("sibling {:?} has no value", s.write.as_str()));
                            }
                        }
                        Ok(Class::ReplicaState)
                    }
                    "config" => Ok(Class::Config),
                    _ => Ok(Class::UnknownHarness),
                }
            }
        }
    }

    /// The key of a classified client or replica-state event.
    pub(crate) fn key_str(&self) -> &str {
        self.key
            .as_ref()
            .map(Str::as_str)
            .expect("classify checked the key")
    }

    /// The process number of a classified client event.
    pub(crate) fn client(&self) -> ProcessNo {
        match self.process {
            WireProcess::Client(p) => p,
            _ => unreachable!("classify checked the process"),
        }
    }

    /// Converts to the owned, typed event.
    pub(crate) fn into_event(self) -> Result<Event, String> {
        let class = self.classify()?;
        let body = match class {
            Class::Invoke(f) => {
                let process = self.client();
                let key = self.key_str().to_owned();
                let node = self.node.map(|s| s.0.into_owned());
                let op = match f {
                    ClientF::Get => Op::Get { key, node },
                    ClientF::Put | ClientF::Delete => {
                        let w = WriteOp {
                            key,
                            node,
                            write: self.write.map(|s| s.0.into_owned()).unwrap_or_default(),
                            value: to_value(self.value)?,
                            observed: self
                                .observed
                                .unwrap_or_default()
                                .into_iter()
                                .map(|s| s.0.into_owned())
                                .collect(),
                            context: self.context.map(|c| to_value(Some(c))).transpose()?,
                        };
                        if f == ClientF::Put {
                            Op::Put(w)
                        } else {
                            Op::Delete(w)
                        }
                    }
                };
                Body::Invoke { process, op }
            }
            Class::Complete(outcome, f) => Body::Complete(Completion {
                process: self.client(),
                outcome,
                f,
                key: self.key_str().to_owned(),
                write: self.write.map(|s| s.0.into_owned()),
                version: version_of(self.dot, self.clock),
                values: self.values.map(siblings_of).transpose()?,
                context: self.context.map(|c| to_value(Some(c))).transpose()?,
            }),
            Class::Nemesis => Body::Nemesis {
                f: self.f.0.into_owned(),
                value: to_value(self.value)?,
            },
            Class::Phase => {
                let s: String = match self.value {
                    Some(v) => serde_json::from_str(v.get()).map_err(|e| e.to_string())?,
                    None => String::new(),
                };
                Body::Phase(Phase::parse(&s))
            }
            Class::ReplicaState => Body::ReplicaState(ReplicaState {
                key: self.key_str().to_owned(),
                node: self.node.map(|s| s.0.into_owned()).unwrap_or_default(),
                values: siblings_of(self.values.unwrap_or_default())?,
            }),
            Class::Config => {
                let mut value = to_value(self.value)?;
                // One place for the format version in the owned event: inside `value`.
                if let (Some(top), Value::Object(map)) = (self.history_format, &mut value) {
                    map.entry("history_format").or_insert(to_value(Some(top))?);
                }
                Body::Config(value)
            }
            Class::UnknownHarness => {
                return Err(format!("unknown harness event f={:?}", self.f.as_str()));
            }
        };
        Ok(Event {
            index: self.index,
            time: self.time,
            body,
        })
    }
}

fn to_value(raw: Option<&RawValue>) -> Result<Value, String> {
    match raw {
        None => Ok(Value::Null),
        Some(r) => serde_json::from_str(r.get()).map_err(|e| e.to_string()),
    }
}

fn version_of(dot: Option<WireDot>, clock: Option<WireClock>) -> Option<Version> {
    if dot.is_none() && clock.is_none() {
        return None;
    }
    Some(Version {
        dot: dot.map(|d| Dot {
            node: d.0.0.into_owned(),
            counter: d.1,
        }),
        clock: clock
            .unwrap_or_default()
            .0
            .into_iter()
            .map(|(n, c)| (n.0.into_owned(), c))
            .collect::<Clock>(),
    })
}

fn siblings_of(values: Vec<WireSibling>) -> Result<Vec<Sibling>, String> {
    values
        .into_iter()
        .map(|s| {
            Ok(Sibling {
                write: s.write.0.into_owned(),
                value: to_value(s.value)?,
                version: version_of(s.dot, s.clock),
            })
        })
        .collect()
}

/// The `process` field on output.
#[derive(Serialize)]
#[serde(untagged)]
enum ProcessOut {
    Client(ProcessNo),
    Named(&'static str),
}

/// The `value` field on output: a JSON value, or a phase name.
#[derive(Serialize)]
#[serde(untagged)]
enum ValueOut<'a> {
    Json(&'a Value),
    Str(&'a str),
}

/// A line on output, borrowed from an [`Event`]; absent fields are left out.
#[derive(Serialize)]
pub(crate) struct WireOut<'a> {
    index: u64,
    time: u64,
    process: ProcessOut,
    #[serde(rename = "type")]
    ty: &'static str,
    f: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<ValueOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<&'a [Sibling]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dot: Option<&'a Dot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock: Option<&'a Clock>,
}

impl<'a> WireOut<'a> {
    pub(crate) fn from_event(e: &'a Event) -> WireOut<'a> {
        let mut out = WireOut {
            index: e.index,
            time: e.time,
            process: ProcessOut::Named("harness"),
            ty: "info",
            f: "",
            key: None,
            node: None,
            write: None,
            value: None,
            observed: None,
            context: None,
            values: None,
            dot: None,
            clock: None,
        };
        match &e.body {
            Body::Invoke { process, op } => {
                out.process = ProcessOut::Client(*process);
                out.ty = "invoke";
                out.f = op.f().as_str();
                match op {
                    Op::Get { key, node } => {
                        out.key = Some(key);
                        out.node = node.as_deref();
                    }
                    Op::Put(w) | Op::Delete(w) => {
                        out.key = Some(&w.key);
                        out.node = w.node.as_deref();
                        out.write = Some(&w.write);
                        out.value = Some(ValueOut::Json(&w.value));
                        out.observed = Some(&w.observed);
                        out.context = w.context.as_ref();
                    }
                }
            }
            Body::Complete(c) => {
                out.process = ProcessOut::Client(c.process);
                out.ty = c.outcome.as_str();
                out.f = c.f.as_str();
                out.key = Some(&c.key);
                out.write = c.write.as_deref();
                out.values = c.values.as_deref();
                out.context = c.context.as_ref();
                if let Some(v) = &c.version {
                    out.dot = v.dot.as_ref();
                    out.clock = Some(&v.clock);
                }
            }
            Body::Nemesis { f, value } => {
                out.process = ProcessOut::Named("nemesis");
                out.f = f;
                out.value = Some(ValueOut::Json(value));
            }
            Body::Phase(p) => {
                out.f = "phase";
                out.value = Some(ValueOut::Str(p.as_str()));
            }
            Body::ReplicaState(r) => {
                out.f = "replica-state";
                out.key = Some(&r.key);
                out.node = Some(&r.node);
                out.values = Some(&r.values);
            }
            Body::Config(v) => {
                out.f = "config";
                out.value = Some(ValueOut::Json(v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{exact_integer, exact_unsigned};

    /// Found by the review: the exponent was clamped at 2^20, so a one followed by 1.1 million
    /// zeros and `e-1100000` (exactly 1, as the canonical form reads it) was "too large".
    #[test]
    fn a_huge_exponent_that_zeros_bring_back_is_read_as_the_canonical_form_reads_it() {
        let zeros = 1_100_000;
        let text = format!("1{}e-{zeros}", "0".repeat(zeros));
        assert_eq!(exact_integer(&text), Some((false, 1)));
        assert_eq!(exact_unsigned(&format!("1e{zeros}")), None, "too large");
    }

    #[test]
    fn an_integer_is_read_exactly_however_it_is_spelt() {
        for (text, value) in [
            ("0", 0),
            ("-0", 0),
            ("0.0", 0),
            ("0e99", 0),
            ("7", 7),
            ("7.0", 7),
            ("7e0", 7),
            ("70e-1", 7),
            ("0.7e1", 7),
            ("1.5e1", 15),
            ("2.50e1", 25),
            ("1E+2", 100),
            ("18446744073709551615", u64::MAX),
            ("1.8446744073709551615e19", u64::MAX),
        ] {
            assert_eq!(exact_unsigned(text), Some(value), "{text}");
        }
        for text in [
            "1.5",
            "1.0000000000000001",
            "25e-1",
            "1e-400",
            "-1",
            "-1.0",
            "18446744073709551616",
            "1e400",
            "\"7\"",
            "true",
            "null",
        ] {
            assert_eq!(exact_unsigned(text), None, "{text}");
        }
        assert_eq!(exact_integer("-12.0"), Some((true, 12)));
        assert_eq!(exact_integer("-1.2"), None);
    }
}
