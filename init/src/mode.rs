//! The run mode, decided once in `main` and passed down (no scattered `getpid() == 1`).

/// Where smss runs, which decides what it may touch and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a machine or initramfs: mounts /proc, /sys, /dev, /run, cgroup2; swap; ends
    /// in reboot(2), never exits.
    System,
    /// PID 1 of a container (`container=` in the environment, `--` given, or a PID namespace
    /// other than the machine's first): no machine mounts; exits with the initial command's
    /// status.
    Container,
    /// Not PID 1: PR_SET_CHILD_SUBREAPER, otherwise like a container.
    Subreaper,
}

impl Mode {
    /// The rule of interface.md section 2.
    /// `child_pid_ns`: PID 1 of a PID namespace that is not the machine's first (docker and
    /// containerd set no `container=`; a machine's init is always in the first).
    pub fn detect(pid: i32, container_env: bool, command_given: bool, child_pid_ns: bool) -> Mode {
        if pid != 1 {
            Mode::Subreaper
        } else if container_env || command_given || child_pid_ns {
            Mode::Container
        } else {
            Mode::System
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::Container => "container",
            Mode::Subreaper => "subreaper",
        }
    }

    /// PID 1 of its namespace: every orphan of the namespace comes to us.
    pub fn is_pid1(self) -> bool {
        self != Mode::Subreaper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_rule() {
        assert_eq!(Mode::detect(1, false, false, false), Mode::System);
        assert_eq!(Mode::detect(1, true, false, false), Mode::Container);
        assert_eq!(Mode::detect(1, false, true, false), Mode::Container);
        assert_eq!(Mode::detect(1, false, false, true), Mode::Container);
        assert_eq!(Mode::detect(42, false, true, false), Mode::Subreaper);
        assert_eq!(Mode::detect(42, true, false, true), Mode::Subreaper);
    }
}
