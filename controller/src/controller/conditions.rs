//! Condition bookkeeping shared by both kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Sets condition `type_`, keeping lastTransitionTime when the status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// An end time the API server accepts after `start`: timestamps have second precision and the
/// CRD requires buildEnd > buildStart.
pub fn end_after(start: Option<&Time>, now: Timestamp) -> Time {
    match start {
        Some(start) if start.0.as_second() >= now.as_second() => Time(
            start
                .0
                .checked_add(SignedDuration::from_secs(1))
                .unwrap_or(now),
        ),
        _ => Time(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut c = Vec::new();
        set(&mut c, "Ready", false, "A", "a", Some(1), t0);
        set(&mut c, "Ready", false, "B", "b", Some(2), t1);
        assert_eq!(c[0].last_transition_time.0, t0);
        assert_eq!(c[0].reason, "B");
        set(&mut c, "Ready", true, "C", "c", Some(2), t1);
        assert_eq!(c[0].last_transition_time.0, t1);
        assert!(is_true(&c, "Ready"));
    }

    #[test]
    fn end_is_strictly_after_start() {
        let t = Timestamp::from_second(1_000).unwrap();
        assert_eq!(end_after(Some(&Time(t)), t).0.as_second(), 1_001);
        let later = Timestamp::from_second(1_005).unwrap();
        assert_eq!(end_after(Some(&Time(t)), later).0, later);
        assert_eq!(end_after(None, t).0, t);
    }
}
