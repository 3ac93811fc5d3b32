package emulator

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the emulator in its own process group, so that stopping
// it also stops anything it spawned, and has the kernel kill it if the test
// binary dies without running its cleanups (a timeout panic, SIGKILL).
//
// Pdeathsig fires when the OS thread that started the child exits, not
// the process; the Go runtime only ends threads whose goroutine exits
// while locked to it, which test code does not do around these calls.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
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
