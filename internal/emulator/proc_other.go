//go:build !unix

package emulator

import (
	"os/exec"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup kills the emulator process; without process groups there is
// no gentler signal to send first.
func killGroup(cmd *exec.Cmd, hard bool) {
	_ = cmd.Process.Kill()
}
