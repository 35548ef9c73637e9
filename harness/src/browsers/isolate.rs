//! Kernel-enforced isolation of `tinyrustlm browsers`: the runner re-executes itself inside a
//! fresh network namespace that holds only a loopback interface (`unshare --net`, then
//! `ip link set lo up`), so neither its server nor any browser can reach a non-loopback address
//! whatever the browser tries (Chromium's IPv6 reachability probe, for one, has no flag).

use std::ffi::OsString;
use std::process::{Command, ExitStatus, Stdio};

/// The flag the re-executed runner carries: it is already inside the namespace.
pub const ISOLATED_FLAG: &str = "--isolated-network";

/// The shell step run inside the namespace before the runner: bring loopback up, then exec the
/// program in `$0` with its arguments.
const LO_UP_THEN_EXEC: &str = "ip link set lo up && exec \"$0\" \"$@\"";

/// True when this process's network namespace has no interface but `lo` (/proc/net/dev follows
/// the reader's namespace).
pub fn loopback_only() -> bool {
    let Ok(dev) = std::fs::read_to_string("/proc/net/dev") else {
        return false;
    };
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .all(|(name, _)| name.trim() == "lo")
}

/// Whether a TCP connection to 127.0.0.1 can be made in this network namespace: false when its
/// loopback is down (as in a fresh `unshare --net` before `ip link set lo up`), where the
/// server could be bound but never reached.
pub fn loopback_usable() -> bool {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let Ok(addr) = listener.local_addr() else {
        return false;
    };
    TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
}

/// Whether a namespace holding only loopback can be made here: `unshare --net` and
/// `ip link set lo up` both run. Err carries why not.
pub fn available() -> Result<(), String> {
    let status = Command::new("unshare")
        .args(["--net", "--", "ip", "link", "set", "lo", "up"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`unshare --net -- ip link set lo up` failed ({status})"
        ))
    }
}

/// Runs the current executable with `args` (its arguments after the program name) followed by
/// [`ISOLATED_FLAG`] inside a fresh loopback-only network namespace, and waits for it. Err
/// carries why isolation is not possible (nothing was run then).
pub fn reexec(args: impl IntoIterator<Item = OsString>) -> Result<ExitStatus, String> {
    available()?;
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    Command::new("unshare")
        .args(["--net", "--", "sh", "-c", LO_UP_THEN_EXEC])
        .arg(exe)
        .args(args)
        .arg(ISOLATED_FLAG)
        .status()
        .map_err(|e| format!("cannot run unshare: {e}"))
}
