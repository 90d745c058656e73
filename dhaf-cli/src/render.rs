//! Tables for people, from the API's JSON.

use serde_json::Value;

/// Left-aligned columns, two spaces apart, under a header.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yes(v: &Value) -> String {
    if v.as_bool() == Some(true) { "yes" } else { "no" }.into()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// How old a stale state is, in words.
fn age(v: &Value) -> String {
    match v["snapshot_age_secs"].as_u64() {
        Some(secs) => format!("{secs} s old"),
        None => "nothing was read yet".into(),
    }
}

/// `status-dhaf`.
pub fn cluster(v: &Value) -> String {
    let stale = v["stale"] == true;
    let mut out = format!("Cluster: {}\n", s(&v["cluster"]));
    out += &paused(v);
    out += &match (v["leader"].is_null(), stale) {
        (true, false) => "Leader:  none (an election is due)\n".to_string(),
        (false, false) => format!("Leader:  {} (term {})\n", s(&v["leader"]["node"]), s(&v["leader"]["token"])),
        (true, true) => "Leader:  unknown (the DCS is unreachable)\n".to_string(),
        (false, true) => format!(
            "Leader:  unknown (the DCS is unreachable); last known: {} (term {})\n",
            s(&v["leader"]["node"]),
            s(&v["leader"]["token"])
        ),
    };
    out += &format!("Answered by: {}\n", s(&v["node"]));
    if !v["dcs_error"].is_null() {
        let since = if v["dcs_error_since"].is_null() { String::new() } else { format!(" since {} UTC", when(&v["dcs_error_since"])) };
        out += &format!("DCS:     unreachable ({}){since}; the last switch stays in force\n", s(&v["dcs_error"]));
    } else {
        out += "DCS:     ok\n";
    }
    if stale {
        out += &format!("Shown:   the last known state ({}); nodes and leader may have changed since\n", age(v));
    }
    out += "\n";
    let rows: Vec<Vec<String>> = list(&v["nodes"])
        .iter()
        .map(|n| vec![s(&n["name"]), if n["alive"] == true { "alive" } else { "DEAD" }.into(), yes(&n["leader"])])
        .collect();
    out += &table(&["NODE", "STATUS", "LEADER"], &rows);
    for svc in list(&v["services"]) {
        let nodes: Vec<String> = list(&svc["disagreement"]).iter().map(|n| s(&n["node"])).collect();
        if !nodes.is_empty() {
            let held = if svc["held"] == true { "; held where it is" } else { "" };
            out += &format!(
                "\nConfig disagreement: service {} is defined differently by {}{held} (dhaf-cli status-service shows what differs)",
                s(&svc["name"]),
                nodes.join(", ")
            );
        }
    }
    out
}

fn votes(ep: &Value) -> String {
    let v: Vec<String> = list(&ep["votes"])
        .iter()
        .map(|vote| match (vote["healthy"].as_bool(), vote["reason"].as_str()) {
            (Some(true), _) => format!("{}: healthy", s(&vote["node"])),
            (_, Some(r)) => format!("{}: unhealthy ({r})", s(&vote["node"])),
            _ => format!("{}: unhealthy", s(&vote["node"])),
        })
        .collect();
    if v.is_empty() {
        "no votes yet".into()
    } else {
        v.join("; ")
    }
}

/// `status-service`: one service in detail.
pub fn service(v: &Value) -> String {
    let mut out = format!("Service: {} ({})\n", s(&v["name"]), s(&v["domain"]));
    if v["stale"] == true {
        out += &format!("Stale:   the DCS is unreachable; this is the last known state ({})\n", age(v));
    }
    out += &format!("Current entry point: {}\n", s(&v["current"]));
    match v["live"].as_str() {
        Some(live) if Some(live) != v["current"].as_str() => {
            out += &format!("Provider points at: {}\n", if live.is_empty() { "no configured entry point" } else { live })
        }
        _ if v["reads_back"] == false => out += "Provider points at: unknown (the switcher cannot read it back; drift is not repaired)\n",
        _ => {}
    }
    if !v["switching"].is_null() {
        let p = &v["switching"];
        out += &format!(
            "Switching: to {} ({}), failing since {} ({} attempts): {}\n",
            s(&p["to"]),
            s(&p["kind"]),
            when(&p["failing_since"]),
            s(&p["attempts"]),
            s(&p["last_error"])
        );
        if !p["next_attempt"].is_null() {
            out += &format!("         next attempt by {}\n", when(&p["next_attempt"]));
        }
    }
    if !v["last_switch"].is_null() {
        let l = &v["last_switch"];
        // While a switch is failing, the record names where the service should point, not a
        // switch that happened.
        let label = if v["switching"].is_null() { "Last switch" } else { "Recorded (not carried out yet)" };
        out += &format!("{label}: {} to {} by {} at {}\n", s(&l["kind"]), s(&l["entry_point"]), s(&l["node"]), when(&l["at"]));
    }
    out += &format!(
        "Switchover: {}\n",
        match v["switchover"].as_str() {
            None => "none".into(),
            Some(to) if Some(to) == v["current"].as_str() && v["switching"].is_null() => format!("to {to} (in force, pinned)"),
            Some(to) if v["switchover_at"].is_u64() => format!("scheduled: switchover to {to} at {} UTC", when(&v["switchover_at"])),
            Some(to) => format!("to {to} (pending)"),
        }
    );
    if let Some(to) = v["failback"]["to"].as_str() {
        out += &match v["failback"]["in_secs"].as_u64() {
            Some(0) | None => format!("Failback: switching back to {to} now\n"),
            Some(secs) => format!("Failback: switching back to {to} in {secs} s (at {} UTC)\n", when(&v["failback"]["at"])),
        };
    }
    if v["panic"] == true {
        out += "Panic mode: YES - no entry point is healthy; dhaf leaves the service as it is\n";
    }
    if v["degraded"] == true {
        out += "Degraded: YES - every healthy entry point is in maintenance; there is nothing to fail over to\n";
    }
    out += &disagreement(v);
    out += "\n";
    let rows: Vec<Vec<String>> = list(&v["entry_points"])
        .iter()
        .map(|e| {
            vec![
                s(&e["priority"]),
                s(&e["name"]),
                s(&e["ip"]),
                s(&e["verdict"]),
                if e["maintenance"] == true { "maintenance".into() } else { "-".into() },
                current_mark(v, e),
                votes(e),
            ]
        })
        .collect();
    out + &table(&["PRIO", "ENTRY POINT", "IP", "VERDICT", "MAINT", "CURRENT", "VOTES"], &rows)
}

/// Nodes that define a service differently, with what differs; empty while all agree.
fn disagreement(service: &Value) -> String {
    let nodes = list(&service["disagreement"]);
    if nodes.is_empty() {
        return String::new();
    }
    let mut out = if service["held"] == true {
        "Config: DISAGREE - fewer than a majority of the nodes share this definition; the service is held where it is\n".to_string()
    } else {
        "Config: DISAGREE - only the nodes that share this definition vote\n".to_string()
    };
    for n in nodes {
        out += &format!("  {} defines it differently:\n", s(&n["node"]));
        for d in list(&n["differences"]) {
            out += &format!("    {}\n", d.as_str().unwrap_or_default());
        }
    }
    out
}

/// The CURRENT cell of an entry point: `*` where the service points; while the provider was read
/// back pointing elsewhere, `* (desired)` and `live` tell the two apart.
fn current_mark(service: &Value, e: &Value) -> String {
    let live_known = service["live"].is_string();
    match (e["current"] == true, e["live"] == true) {
        (true, live) if live || !live_known => "*".into(),
        (true, _) => "* (desired)".into(),
        (false, true) => "live".into(),
        (false, false) => String::new(),
    }
}

/// The `Cluster: PAUSED ...` line of a status, empty while the cluster is not paused.
fn paused(status: &Value) -> String {
    let p = &status["paused"];
    if p.is_null() {
        return String::new();
    }
    format!(
        "Cluster: PAUSED since {} UTC by {}: nodes check and report, nothing is switched until `dhaf-cli resume`\n",
        when(&p["since"]),
        s(&p["by"])
    )
}

/// `status-services`: one line per service.
pub fn services(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v)
        .iter()
        .map(|svc| {
            let eps = list(&svc["entry_points"]);
            let healthy = eps.iter().filter(|e| e["verdict"] == "healthy").count();
            let current = match (svc["current"].as_str(), svc["live"].as_str()) {
                (Some(c), Some(l)) if c != l => format!("{c} (switching; live {})", if l.is_empty() { "none" } else { l }),
                _ => s(&svc["current"]),
            };
            vec![
                s(&svc["name"]),
                s(&svc["domain"]),
                current,
                format!("{healthy}/{}", eps.len()),
                match (svc["switchover"].as_str(), svc["switchover_at"].is_u64()) {
                    (Some(to), true) if svc["current"].as_str() != Some(to) => format!("{to} at {}", when(&svc["switchover_at"])),
                    _ => s(&svc["switchover"]),
                },
                match (svc["panic"] == true, svc["degraded"] == true) {
                    (true, _) => "PANIC".into(),
                    (_, true) => "DEGRADED".into(),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    let mut out = table(&["SERVICE", "DOMAIN", "CURRENT", "HEALTHY", "SWITCHOVER", "TROUBLE"], &rows);
    if let Some(stale) = list(v).iter().find(|svc| svc["stale"] == true) {
        out += &format!("\nThe DCS is unreachable: this is the last known state ({}).\n", age(stale));
    }
    out
}

/// `status-services` from the whole status: the services, and a paused cluster said first.
pub fn services_of(status: &Value) -> String {
    paused(status) + &services(&status["services"])
}

/// `switchover-candidates`.
pub fn candidates(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v)
        .iter()
        .map(|e| vec![s(&e["priority"]), s(&e["name"]), s(&e["ip"]), if e["current"] == true { "*".into() } else { "".into() }])
        .collect();
    if rows.is_empty() {
        return "No candidates: no entry point is healthy by majority and out of maintenance.\n".into();
    }
    table(&["PRIO", "ENTRY POINT", "IP", "CURRENT"], &rows)
}

/// `history`, oldest first.
pub fn history(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v)
        .iter()
        .map(|h| {
            // A switch its own leader could not tell, told by a later term: both terms.
            let term = match h["told_in"].is_null() {
                true => s(&h["token"]),
                false => format!("{} (told in {})", s(&h["token"]), s(&h["told_in"])),
            };
            vec![when(&h["at"]), s(&h["kind"]), s(&h["entry_point"]), s(&h["node"]), term, s(&h["requested_by"])]
        })
        .collect();
    if rows.is_empty() {
        return "No switches recorded yet.\n".into();
    }
    table(&["TIME (UTC)", "KIND", "ENTRY POINT", "BY NODE", "TERM", "ASKED BY"], &rows)
}

/// `audit`: the node's audit trail of mutations, oldest first.
pub fn audit(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v)
        .iter()
        .map(|a| {
            let outcome = match a["code"].as_str() {
                Some(code) => format!("{} {} ({code})", s(&a["outcome"]), s(&a["status"])),
                None => format!("{} {}", s(&a["outcome"]), s(&a["status"])),
            };
            vec![
                when(&a["at_ms"].as_f64().map_or(Value::Null, |ms| Value::from(ms / 1000.0))),
                s(&a["token"]),
                s(&a["role"]),
                s(&a["client"]),
                format!("{} {}", s(&a["method"]), s(&a["path"])),
                outcome,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No changes asked of this node yet.\n".into();
    }
    table(&["TIME (UTC)", "TOKEN", "ROLE", "FROM", "REQUEST", "OUTCOME"], &rows)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS`.
fn when(v: &Value) -> String {
    let Some(secs) = v.as_f64() else { return s(v) };
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_read_as_utc() {
        assert_eq!(when(&json!(0.0)), "1970-01-01 00:00:00");
        assert_eq!(when(&json!(1_709_210_096.5)), "2024-02-29 12:34:56");
    }

    #[test]
    fn history_names_the_term_that_told_a_switch_its_own_leader_could_not() {
        let v = json!([
            {"at": 0.0, "kind": "failover", "entry_point": "ep-2", "node": "n1", "token": 7, "told_in": 9},
            {"at": 60.0, "kind": "failback", "entry_point": "ep-1", "node": "n2", "token": 9, "requested_by": null},
        ]);
        let out = history(&v);
        assert!(out.contains("7 (told in 9)"), "{out}");
        assert_eq!(out.matches("told in").count(), 1, "{out}");
    }

    #[test]
    fn a_failing_switch_is_shown_as_failing_never_as_done() {
        let ep = |name: &str, current: bool, live: bool| {
            json!({"priority": 1, "name": name, "ip": "10.0.0.1", "verdict": "healthy", "maintenance": false,
                   "current": current, "live": live, "votes": []})
        };
        let v = json!({
            "name": "site", "domain": "site.test", "current": "ep-2", "live": "ep-1",
            "switching": {"to": "ep-2", "kind": "failover", "attempts": 7, "failing_since": 0.0, "last_error": "HTTP 503", "next_attempt": 30.0},
            "last_switch": {"kind": "failover", "entry_point": "ep-2", "node": "n1", "at": 0.0},
            "switchover": null, "panic": false,
            "entry_points": [ep("ep-1", false, true), ep("ep-2", true, false)],
        });
        let out = service(&v);
        assert!(out.contains("Provider points at: ep-1"), "{out}");
        assert!(out.contains("Switching: to ep-2 (failover), failing since 1970-01-01 00:00:00 (7 attempts): HTTP 503"), "{out}");
        assert!(out.contains("next attempt by 1970-01-01 00:00:30"), "{out}");
        assert!(!out.contains("Last switch"), "{out}");
        assert!(out.contains("Recorded (not carried out yet): failover to ep-2"), "{out}");
        assert!(out.contains("* (desired)") && out.contains(" live "), "{out}");
    }

    #[test]
    fn a_switcher_that_cannot_read_back_is_shown_as_unknown() {
        let v = json!({
            "name": "site", "domain": "site.test", "current": "ep-1", "live": null, "reads_back": false,
            "switching": null, "last_switch": null, "switchover": null, "panic": false,
            "entry_points": [{"priority": 1, "name": "ep-1", "ip": "10.0.0.1", "verdict": "healthy",
                              "maintenance": false, "current": true, "live": false, "votes": []}],
        });
        let out = service(&v);
        assert!(out.contains("Provider points at: unknown (the switcher cannot read it back"), "{out}");
        let read = json!({"reads_back": true, "live": null, "current": "ep-1", "entry_points": []});
        assert!(!service(&read).contains("Provider points at"), "not read yet is not 'cannot read'");
    }

    #[test]
    fn a_disagreement_names_the_nodes_and_what_differs() {
        let v = json!({
            "name": "site", "domain": "site.test", "current": "ep-1", "live": "ep-1", "reads_back": true,
            "switching": null, "last_switch": null, "switchover": null, "panic": false, "held": true,
            "disagreement": [{"node": "n3", "differences": ["entry-points[0]: ep-1 10.0.0.1 \u{2260} ep-2 10.0.0.2"]}],
            "entry_points": [],
        });
        let out = service(&v);
        assert!(out.contains("Config: DISAGREE") && out.contains("held where it is"), "{out}");
        assert!(out.contains("  n3 defines it differently:\n    entry-points[0]: ep-1 10.0.0.1 \u{2260} ep-2 10.0.0.2"), "{out}");
    }

    #[test]
    fn status_dhaf_names_each_service_the_nodes_disagree_on() {
        let v = json!({
            "cluster": "c", "node": "n1", "leader": {"node": "n1", "token": 7}, "dcs_error": null, "stale": false,
            "nodes": [{"name": "n1", "alive": true, "leader": true}, {"name": "n3", "alive": true, "leader": false}],
            "services": [
                {"name": "site", "held": false, "disagreement": [{"node": "n3", "differences": ["rise: 2 \u{2260} 3"]}]},
                {"name": "api", "held": false, "disagreement": []},
            ],
        });
        let out = cluster(&v);
        assert!(out.contains("Config disagreement: service site is defined differently by n3"), "{out}");
        assert!(!out.contains("service api"), "{out}");
    }

    #[test]
    fn a_pending_failback_says_where_and_when() {
        let v = json!({"name": "site", "current": "ep-2", "live": "ep-2", "switchover": null,
                       "failback": {"to": "ep-1", "at": 1_709_210_108u64, "in_secs": 12}, "entry_points": []});
        assert!(service(&v).contains("Failback: switching back to ep-1 in 12 s (at 2024-02-29 12:35:08 UTC)"), "{}", service(&v));
        let none = json!({"name": "site", "current": "ep-1", "failback": null, "entry_points": []});
        assert!(!service(&none).contains("Failback"));
    }

    #[test]
    fn columns_line_up() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }
}
