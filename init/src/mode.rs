//! The run mode, decided once in `main` and passed down (no scattered `getpid() == 1`).

/// Where smss runs, which decides what it may touch and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a machine or initramfs: mounts /proc, /sys, /dev, /run, cgroup2; swap; ends
    /// in reboot(2), never exits.
    System,
    /// PID 1 of a container (`container=` in the environment, or `--` given): no machine
    /// mounts; exits with the initial command's status.
    Container,
    /// Not PID 1: PR_SET_CHILD_SUBREAPER, otherwise like a container.
    Subreaper,
}

impl Mode {
    /// The rule of interface.md section 2.
    pub fn detect(pid: i32, container_env: bool, command_given: bool) -> Mode {
        if pid != 1 {
            Mode::Subreaper
        } else if container_env || command_given {
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
        assert_eq!(Mode::detect(1, false, false), Mode::System);
        assert_eq!(Mode::detect(1, true, false), Mode::Container);
        assert_eq!(Mode::detect(1, false, true), Mode::Container);
        assert_eq!(Mode::detect(42, false, true), Mode::Subreaper);
        assert_eq!(Mode::detect(42, true, false), Mode::Subreaper);
    }
}
