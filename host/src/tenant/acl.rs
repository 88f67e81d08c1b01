//! The Redis ACL user for a tenant's producers (`sluice tenant acl NAME`):
//! exactly what they need and nothing else.
//!
//! A producer pushes tasks onto the tenant's queue, reads its result records
//! (`{Q}:result:*`), and reads and trims its reply lists (keys starting with
//! the tenant's `reply_to_prefix`). It gets no other key — not the worker's
//! in-flight lists, leases or dead letters, nor another tenant's keys — and
//! only the commands those need: no `FLUSHALL`, `CONFIG`, `KEYS`, scripts or
//! administration. Redis 7 ACL syntax
//! (<https://redis.io/docs/latest/commands/acl-setuser/>): `resetkeys`/
//! `resetchannels`/`-@all` start from nothing, `%W~` grants write-only key
//! access, `%R~` read-only, `~` both.

use super::TenantSpec;
use crate::worker::acl::glob_escape;

/// Commands a producer needs: push tasks; read results; read, pop and trim
/// reply lists; check a key's existence or TTL; and connection basics.
pub const PRODUCER_COMMANDS: &[&str] = &[
    "rpush",
    "lpush",
    "llen",
    "get",
    "mget",
    "exists",
    "ttl",
    "pttl",
    "lrange",
    "lpop",
    "rpop",
    "blpop",
    "brpop",
    "ltrim",
    "del",
    "ping",
    "hello",
    "client|setname",
    "select",
];

/// The `ACL SETUSER` command giving tenant `spec`'s producers their access,
/// as one line (the user is named after the tenant; `password` `None` means
/// `nopass`).
pub fn setuser_line(spec: &TenantSpec, password: Option<&str>) -> String {
    let queue = &spec.queue;
    let auth = match password {
        Some(p) => format!(">{p}"),
        None => "nopass".to_owned(),
    };
    let commands: Vec<String> = PRODUCER_COMMANDS.iter().map(|c| format!("+{c}")).collect();
    format!(
        "ACL SETUSER {name} reset on {auth} resetchannels -@all {commands} %W~{queue} %R~{{{queue}}}:result:* ~{prefix}*",
        name = spec.name,
        commands = commands.join(" "),
        prefix = glob_escape(&spec.reply_to_prefix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_only_the_tenants_keys() {
        let spec = TenantSpec {
            name: "acme".into(),
            queue: "acme_q".into(),
            plugins: "p".into(),
            weight: 1.0,
            max_concurrency: None,
            rate_per_sec: None,
            cpu_ms_per_min: None,
            fuel_per_task: None,
            memory_bytes: None,
            timeout_ms: None,
            allowed_outbound_hosts: None,
            reply_to_prefix: "acme:*".into(),
            max_message_bytes: None,
        };
        let line = setuser_line(&spec, Some("s3cret"));
        assert!(
            line.starts_with("ACL SETUSER acme reset on >s3cret "),
            "{line}"
        );
        assert!(line.contains(" %W~acme_q "), "{line}");
        assert!(line.contains(" %R~{acme_q}:result:* "), "{line}");
        assert!(line.ends_with(" ~acme:\\**"), "{line}");
        assert!(!line.contains('\n'));
    }
}
