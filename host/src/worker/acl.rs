//! The Redis ACL user for workers (`sluice acl worker`): the commands a
//! worker sends (and its Lua scripts call) on its queues' keys, and nothing
//! else — the counterpart of the producers' line of `sluice tenant acl`
//! ([`crate::tenant::acl`]).
//!
//! A worker touches only `Q` (the pending list) and `{Q}:*` (leases,
//! in-flight lists, results, dead letters, outbox, counters) of each queue
//! it serves, plus `RPUSH` onto `reply_to` lists, which belong to producers
//! (any key, or only keys under `--reply-to-prefix`; a tenant's
//! `reply_to_prefix`), granted by a Redis 7 selector so that it cannot read
//! them or write them any other way. Redis 7 ACL syntax
//! (<https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/>).

/// Commands the worker sends itself, and those its Lua scripts call
/// (scripts run with the caller's permissions), on its queues' keys.
pub const WORKER_COMMANDS: &[&str] = &[
    // Scripts (each state change is one script).
    "evalsha",
    "eval",
    "script|load",
    "script|exists",
    // Idle fetch, and what the scripts call.
    "blmove",
    "lmove",
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "lrem",
    "lset",
    "lindex",
    "llen",
    "lrange",
    "get",
    "set",
    "del",
    "pexpire",
    "hget",
    "hset",
    "hdel",
    "hmget",
    "hgetall",
    "hkeys",
    "hlen",
    "hincrby",
    "zadd",
    "zrem",
    "zrange",
    "zcard",
    "zpopmin",
    // Per-key order (`ordering_key`): blocked keys, parked count.
    "sadd",
    "srem",
    "scard",
    "incr",
    "decr",
    // Server clock (lease expiry, `sluice stats`), --wait-replicas.
    "time",
    "wait",
    // Connection set-up and health.
    "ping",
    "hello",
    "auth",
    "select",
    "client|setname",
    // (Not `client|setinfo`: Redis 7.0 does not know it, so an ACL naming
    // it is refused; redis-rs ignores the refusal of its `CLIENT SETINFO`.)
    "info",
    // Redis Cluster: the slot map the client routes by.
    "cluster|slots",
    "cluster|shards",
    "cluster|nodes",
    "cluster|myid",
    "readonly",
];

/// The `ACL SETUSER` line for a worker user named `user` serving `queues`,
/// pushing replies onto keys starting with `reply_to_prefix` (`None`: any
/// key), with `password` (`None`: `nopass`).
pub fn setuser_line(
    user: &str,
    queues: &[&str],
    reply_to_prefix: Option<&str>,
    password: Option<&str>,
) -> String {
    let auth = match password {
        Some(p) => format!(">{p}"),
        None => "nopass".to_owned(),
    };
    let commands: Vec<String> = WORKER_COMMANDS.iter().map(|c| format!("+{c}")).collect();
    let keys: Vec<String> = queues
        .iter()
        .map(|q| format!("~{q} ~{{{q}}}:*", q = glob_escape(q)))
        .collect();
    let replies = match reply_to_prefix {
        Some(prefix) => reply_selector(prefix),
        None => " (%W~* +rpush)".to_owned(),
    };
    format!(
        "ACL SETUSER {user} reset on {auth} resetchannels -@all {commands} {keys}{replies}",
        commands = commands.join(" "),
        keys = keys.join(" "),
    )
}

/// The selector (with a leading space) letting the user `RPUSH` replies
/// onto keys starting with `prefix`, and do nothing else with them.
pub fn reply_selector(prefix: &str) -> String {
    format!(" (%W~{}* +rpush)", glob_escape(prefix))
}

/// Escapes Redis glob characters so that text matches only itself.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_the_queue_keys_and_reply_pushes() {
        let line = setuser_line("sluice-worker", &["task_queue"], None, Some("pw"));
        assert!(
            line.starts_with("ACL SETUSER sluice-worker reset on >pw resetchannels -@all +evalsha")
        );
        assert!(
            line.contains(" ~task_queue ~{task_queue}:* (%W~* +rpush)"),
            "{line}"
        );
        assert!(
            !line.contains("+keys") && !line.contains("+flushall") && !line.contains("+config")
        );
        let line = setuser_line("w", &["a", "b*"], Some("acme:"), None);
        assert!(line.contains("nopass"));
        assert!(
            line.contains("~a ~{a}:* ~b\\* ~{b\\*}:* (%W~acme:* +rpush)"),
            "{line}"
        );
    }
}
