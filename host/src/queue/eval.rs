//! Script calls encoded straight into one `EVALSHA` command.
//!
//! redis-rs's `ScriptInvocation` keeps every key and argument in a vector of
//! its own and copies them all into a new command per call; the
//! acknowledgement of a batch carries each task's message and result record
//! (~3 KB per task), so those copies and allocations showed up in the
//! worker's profile. [`Eval`] writes keys and arguments once, into the
//! command that is sent, and loads the script on `NOSCRIPT` like redis-rs does
//! (<https://redis.io/docs/latest/commands/evalsha/>).

use crate::connection::RedisConn;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs};

/// One call of `script`: `EVALSHA <sha1> <numkeys> key… arg…`.
pub(super) struct Eval<'s> {
    script: &'s Script,
    cmd: Cmd,
}

impl<'s> Eval<'s> {
    /// A call with `keys` keys: the first `keys` values given to
    /// [`Eval::arg`] become `KEYS[1..=keys]`, the rest `ARGV`.
    pub(super) fn new(script: &'s Script, keys: usize) -> Eval<'s> {
        Eval::with_capacity(script, keys, 0, 0)
    }

    /// Like [`Eval::new`], for a call that will carry about `args` keys and
    /// arguments of `bytes` bytes in all: the command's buffers are allocated
    /// once instead of regrowing as a large batch is appended.
    pub(super) fn with_capacity(
        script: &'s Script,
        keys: usize,
        args: usize,
        bytes: usize,
    ) -> Eval<'s> {
        let mut cmd = Cmd::with_capacity(args + 3, bytes + 64);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        Eval { script, cmd }
    }

    /// Appends a key or an argument.
    pub(super) fn arg<T: ToRedisArgs>(&mut self, value: T) -> &mut Eval<'s> {
        self.cmd.arg(value);
        self
    }

    /// Runs the call, loading the script first if the server does not have it
    /// (after a restart or `SCRIPT FLUSH`).
    ///
    /// # Errors
    /// The Redis error, or the reply's conversion error.
    pub(super) async fn invoke<T: FromRedisValue>(&self, conn: &mut RedisConn) -> RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            reply => reply,
        }
    }
}
