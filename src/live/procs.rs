//! The `dynamo serve` processes of a live run: started, killed (SIGKILL), stopped and resumed
//! (SIGSTOP, SIGCONT), restarted on the same data directory, and always stopped at the end.
//!
//! Each node runs in a process group of its own, so that a Ctrl-C in the terminal reaches the
//! harness alone (which then heals and stops the nodes itself), and is told by the kernel to die
//! with the harness (`PR_SET_PDEATHSIG`), so that not even a `kill -9` of the harness leaves a node
//! behind. Every pid is also in a registry that a panic hook and a second Ctrl-C kill from.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;

/// Pids of the nodes running now, for the panic hook and the second Ctrl-C.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kills every registered node (SIGCONT first, so a stopped one dies at once too). Safe from a
/// panic hook or a signal handler's task.
pub fn kill_all_registered() {
    let pids = RUNNING.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        signal(pid, libc::SIGCONT);
        signal(pid, libc::SIGKILL);
    }
}

/// Installs, once, a panic hook that kills the nodes before the default hook runs.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            kill_all_registered();
            default(info);
        }));
    });
}

fn signal(pid: i32, sig: libc::c_int) -> bool {
    // SAFETY: kill(2) with a pid this process started; it touches no memory of ours.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// One node's process and how to start it again.
pub struct NodeProc {
    /// The node's name.
    pub id: String,
    /// Where it listens for clients and peers.
    pub listen: String,
    /// `dynamo serve`'s arguments.
    args: Vec<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log (stderr), appended to across restarts.
    pub log: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl NodeProc {
    /// A node that is not running yet.
    pub fn new(
        id: String,
        listen: String,
        args: Vec<String>,
        data_dir: PathBuf,
        log: PathBuf,
    ) -> NodeProc {
        NodeProc {
            id,
            listen,
            args,
            data_dir,
            log,
            child: None,
            stopped: false,
        }
    }

    /// Starts the node (it must not be running).
    pub fn spawn(&mut self) -> std::io::Result<()> {
        assert!(self.child.is_none(), "{} runs already", self.id);
        std::fs::create_dir_all(&self.data_dir)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let exe = std::env::current_exe()?;
        let parent = std::process::id() as i32;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness died before the prctl: die now.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        if let Ok(mut running) = RUNNING.lock() {
            running.push(child.id() as i32);
        }
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    fn forget(&mut self, pid: i32) {
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|&p| p != pid);
        }
    }

    /// kill -9, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            let _ = child.kill();
            let _ = child.wait();
            self.forget(pid);
        }
        self.stopped = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child
            && signal(child.id() as i32, libc::SIGSTOP)
        {
            self.stopped = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id() as i32, libc::SIGCONT);
        }
        self.stopped = false;
    }

    /// The exit status, if the process ended by itself (it is then reaped and forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let pid = self.child.take().map(|c| c.id() as i32).unwrap_or(0);
        self.forget(pid);
        Some(status)
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if self.stopped {
            self.resume();
        }
        self.kill();
    }
}
