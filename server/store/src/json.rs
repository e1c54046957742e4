//! JSON encoding of stored objects, written straight into a caller's buffer (no serde on the
//! per-message path): the contract's message object, tempIds, and ISO-8601 timestamps.

use super::{Message, TempId};

/// Appends `s` as a JSON string literal (quotes included): the protocol crate's encoder.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    chatwire_protocol::json::write_str(s, out);
}

/// Appends a JSON string or `null`.
pub fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// Appends a tempId with its JSON type.
pub(crate) fn write_temp_id(t: &TempId, out: &mut Vec<u8>) {
    match t {
        TempId::Int(n) => write_i64(out, *n),
        TempId::Float(f) if f.is_finite() => out.extend_from_slice(f.to_string().as_bytes()),
        TempId::Float(_) => out.extend_from_slice(b"null"),
        TempId::Str(s) => write_str(out, s),
    }
}

/// A UTC date and time of day from Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1-12.
    pub month: i64,
    /// Day of the month, 1-31.
    pub day: i64,
    /// Day of the week, 0 = Sunday.
    pub weekday: i64,
    /// Seconds since midnight.
    pub second_of_day: i64,
    /// Milliseconds past the second.
    pub millis: i64,
}

impl Civil {
    /// The UTC date of `ms` (Unix milliseconds).
    pub fn from_ms(ms: i64) -> Civil {
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let second_of_day = secs.rem_euclid(86_400);
        // Civil-from-days (H. Hinnant), valid for the whole i64 day range we can meet.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7),
            second_of_day,
            millis,
        }
    }
}

/// Appends `ms` (Unix milliseconds) as `"YYYY-MM-DDTHH:MM:SS.mmmZ"` (quotes included).
pub fn write_timestamp(out: &mut Vec<u8>, ms: i64) {
    let c = Civil::from_ms(ms);
    if !(0..=9999).contains(&c.year) {
        return write_timestamp_wide(out, c);
    }
    // Every field fits its width: spelled digit by digit, with no formatter.
    let sod = c.second_of_day;
    let mut s = *b"\"0000-00-00T00:00:00.000Z\"";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            s[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(1, 4, c.year);
    put(6, 2, c.month);
    put(9, 2, c.day);
    put(12, 2, sod / 3600);
    put(15, 2, (sod / 60) % 60);
    put(18, 2, sod % 60);
    put(21, 3, c.millis);
    out.extend_from_slice(&s);
}

/// [`write_timestamp`] for a year outside 0-9999 (a sign or a fifth digit).
fn write_timestamp_wide(out: &mut Vec<u8>, c: Civil) {
    let sod = c.second_of_day;
    let s = format!(
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\"",
        c.year,
        c.month,
        c.day,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        c.millis
    );
    out.extend_from_slice(s.as_bytes());
}

/// Appends the contract's message object.
pub(crate) fn write_message(m: &Message, out: &mut Vec<u8>) {
    let p = &*m.sender_profile;
    out.extend_from_slice(b"{\"id\":");
    write_i64(out, m.id);
    out.extend_from_slice(b",\"conversationId\":");
    write_i64(out, m.conversation_id);
    out.extend_from_slice(b",\"sender\":{\"id\":");
    write_i64(out, m.sender.id);
    out.extend_from_slice(b",\"username\":");
    write_str(out, &p.username);
    out.extend_from_slice(b",\"firstName\":");
    write_opt_str(out, p.first_name.as_deref());
    out.extend_from_slice(b",\"lastName\":");
    write_opt_str(out, p.last_name.as_deref());
    out.extend_from_slice(b",\"profileImage\":");
    write_opt_str(out, p.profile_image.as_deref());
    out.extend_from_slice(b"},\"senderType\":\"");
    out.extend_from_slice(m.sender.user_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"messageType\":\"");
    out.extend_from_slice(m.message_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"content\":");
    write_str(out, &m.content);
    out.extend_from_slice(if m.is_read {
        b",\"isRead\":true"
    } else {
        b",\"isRead\":false"
    });
    out.extend_from_slice(b",\"createdAt\":");
    write_timestamp(out, m.created_at_ms);
    out.extend_from_slice(b",\"attachmentUrl\":");
    write_opt_str(out, m.attachment_url.as_deref());
    out.extend_from_slice(b",\"attachmentName\":");
    write_opt_str(out, m.attachment_name.as_deref());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{MessageType, Profile, UserKey, UserType};
    use std::sync::Arc;

    #[test]
    fn timestamps_are_iso_millis_utc() {
        let mut out = Vec::new();
        write_timestamp(&mut out, 1_794_650_400_000);
        assert_eq!(out, b"\"2026-11-14T10:00:00.000Z\"");
        out.clear();
        write_timestamp(&mut out, 951_782_400_123); // 2000-02-29
        assert_eq!(out, b"\"2000-02-29T00:00:00.123Z\"");
        out.clear();
        write_timestamp(&mut out, 0);
        assert_eq!(out, b"\"1970-01-01T00:00:00.000Z\"");
    }

    #[test]
    fn timestamps_spelled_by_hand_match_the_formatter() {
        // From the year -2 to 10001, in steps that visit every field's digits.
        let (first, last) = (-62_230_000_000_000_i64, 253_440_000_000_000_i64);
        let step = 7_919_993_519;
        let (mut fast, mut wide) = (Vec::new(), Vec::new());
        let mut ms = first;
        while ms <= last {
            for at in [ms, ms + 999, ms + 86_399_999] {
                fast.clear();
                wide.clear();
                write_timestamp(&mut fast, at);
                write_timestamp_wide(&mut wide, Civil::from_ms(at));
                assert_eq!(fast, wide, "at {at} ms");
            }
            ms += step;
        }
        fast.clear();
        write_timestamp(&mut fast, -1);
        assert_eq!(fast, b"\"1969-12-31T23:59:59.999Z\"");
        fast.clear();
        write_timestamp(&mut fast, 253_402_300_800_000);
        assert_eq!(fast, b"\"10000-01-01T00:00:00.000Z\"");
    }

    #[test]
    fn message_object_matches_the_contract_and_parses() {
        let m = Message {
            id: 789,
            conversation_id: 123,
            sender: UserKey::new(UserType::Influencer, 456),
            sender_profile: Arc::new(Profile {
                username: "john_doe".into(),
                first_name: Some("John".into()),
                last_name: Some("Doe".into()),
                profile_image: None,
            }),
            message_type: MessageType::Text,
            content: "He said \"hi\"\n\u{1}é".into(),
            attachment_url: None,
            attachment_name: None,
            created_at_ms: 1_794_650_400_000,
            is_read: false,
            temp_id: None,
        };
        let mut out = Vec::new();
        m.write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 789);
        assert_eq!(v["conversationId"], 123);
        assert_eq!(v["sender"]["id"], 456);
        assert_eq!(v["sender"]["username"], "john_doe");
        assert_eq!(v["sender"]["profileImage"], serde_json::Value::Null);
        assert_eq!(v["senderType"], "influencer");
        assert_eq!(v["messageType"], "text");
        assert_eq!(v["content"], "He said \"hi\"\n\u{1}é");
        assert_eq!(v["isRead"], false);
        assert_eq!(v["createdAt"], "2026-11-14T10:00:00.000Z");
        assert_eq!(v["attachmentUrl"], serde_json::Value::Null);
        assert_eq!(v["attachmentName"], serde_json::Value::Null);
    }
}
