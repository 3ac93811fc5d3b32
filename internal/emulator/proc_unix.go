//go:build unix && !linux

package emulator

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the emulator in its own process group, so that stopping
// it also stops anything it spawned.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup signals the emulator's process group: SIGTERM, or SIGKILL if
// hard. Errors (typically "no such process") are ignored.
func killGroup(cmd *exec.Cmd, hard bool) {
	sig := syscall.SIGTERM
	if hard {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
