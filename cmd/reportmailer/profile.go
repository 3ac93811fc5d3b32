package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles starts a CPU profile into cpu and arranges a heap
// profile into mem, when they are set (drain -cpuprofile, -memprofile:
// for `make bench`). stop ends them; its error names the file.
func startProfiles(cpu, mem string) (stop func() error, err error) {
	var cf *os.File
	if cpu != "" {
		if cf, err = os.Create(cpu); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(cf); err != nil {
			cf.Close()
			return nil, fmt.Errorf("cpu profile %s: %w", cpu, err)
		}
	}
	return func() error {
		var errs []error
		if cf != nil {
			pprof.StopCPUProfile()
			if err := cf.Close(); err != nil {
				errs = append(errs, fmt.Errorf("cpu profile %s: %w", cpu, err))
			}
		}
		if mem != "" {
			runtime.GC() // the heap as of the last collection, up to date
			f, err := os.Create(mem)
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("heap profile: %w", err))...)
			}
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				errs = append(errs, fmt.Errorf("heap profile %s: %w", mem, err))
			}
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("heap profile %s: %w", mem, err))
			}
		}
		return errors.Join(errs...)
	}, nil
}
