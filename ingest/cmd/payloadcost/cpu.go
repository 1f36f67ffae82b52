package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// backendCPU is the CPU time (user + system) a local Postgres backend has
// used, from /proc/<pid>/stat: 10 ms resolution.
func backendCPU(pid uint32) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("backend %d: %w (the server must run on this machine)", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 { // fields 14 and 15 of stat: utime, stime
		return 0, fmt.Errorf("backend %d: short /proc stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / clockTicks, nil
}

// goCPU is the CPU time (user + system) this process has used, its
// garbage collector's included.
func goCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perEvent is d per event, in microseconds.
func perEvent(d time.Duration, events int) float64 {
	return float64(d.Nanoseconds()) / 1e3 / float64(events)
}
