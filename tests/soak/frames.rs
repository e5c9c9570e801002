//! What a client makes of the server's frames: joins, leaves, sequence-numbered
//! messages, acks, errors and closes, in each dialect, written into its [`Record`].

use serde_json::Value;

use super::{Ev, Lang, Record, Shared, lock};

/// Parses one frame from the server into the record.
pub(super) fn on_frame(rec: &Shared, lang: Lang, frame: &str) {
    let mut r = lock(rec);
    match lang {
        Lang::Rtc => on_rtc_frame(&mut r, frame),
        Lang::Json => on_json_frame(&mut r, frame),
    }
}

fn on_rtc_frame(r: &mut Record, frame: &str) {
    let parts: Vec<&str> = frame.splitn(3, '|').collect();
    match parts.as_slice() {
        ["/roominfo", ..] => r.joined = true,
        ["/announce", id, _] => r.events.push(Ev::Join((*id).to_owned())),
        ["/leave", id, _] => r.events.push(Ev::Leave((*id).to_owned())),
        ["/seq", id, n] => r
            .events
            .push(Ev::Msg((*id).to_owned(), parse_seq(n, frame))),
        ["/message", id, data] => {
            let data: Value = serde_json::from_str(data).expect("a JSON publish");
            let n = data["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("seq in {frame}"));
            r.events.push(Ev::Msg((*id).to_owned(), n));
        }
        ["/to", _, wrapped] if wrapped.starts_with("/announce|") => {
            let id = wrapped.split('|').nth(1).expect("introduced id");
            r.events.push(Ev::Join(id.to_owned()));
        }
        ["/error", body, ..] => {
            let v: Value = serde_json::from_str(body).expect("error body");
            *r.errors
                .entry(v["code"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        ["/close", body, ..] => {
            let v: Value = serde_json::from_str(body).expect("close body");
            r.close = v["code"].as_u64().map(|c| c as u16);
        }
        _ => panic!("unexpected rtc-signaller frame: {frame}"),
    }
}

fn on_json_frame(r: &mut Record, frame: &str) {
    let v: Value = serde_json::from_str(frame).unwrap_or_else(|e| panic!("{e}: {frame}"));
    let ids = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["peerId"].as_str().expect("peerId").to_owned())
            .collect()
    };
    match v["type"].as_str().unwrap_or("?") {
        "welcome" => r.id = v["peerId"].as_str().expect("peerId").to_owned(),
        "ack" => match v["requestId"].as_str().unwrap_or("") {
            "join" => r.joined = true,
            id => {
                if let Some(n) = id.strip_prefix('p').and_then(|n| n.parse::<u64>().ok()) {
                    r.acked = r.acked.max(n + 1);
                }
            }
        },
        "presence" => {
            for id in ids("joined") {
                r.events.push(Ev::Join(id));
            }
            for id in ids("left") {
                r.events.push(Ev::Leave(id));
            }
        }
        "message" => {
            let from = v["from"].as_str().expect("from").to_owned();
            let data = &v["data"];
            let n = data["seq"]
                .as_u64()
                .or_else(|| data["args"][0].as_u64())
                .unwrap_or_else(|| panic!("no sequence number in {frame}"));
            r.events.push(Ev::Msg(from, n));
        }
        "error" => {
            *r.errors
                .entry(v["code"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        "close" => r.close = v["code"].as_u64().map(|c| c as u16),
        _ => panic!("unexpected JSON frame: {frame}"),
    }
}

fn parse_seq(n: &str, frame: &str) -> u64 {
    n.parse().unwrap_or_else(|_| panic!("seq in {frame}"))
}
