package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100

// cpuByCommand sums the CPU time (user + system, seconds) of every live
// process, by command name: "worker", "postgres", "redis-server", …
func cpuByCommand() map[string]float64 {
	out := map[string]float64{}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		comm, cpu, ok := readStat(p)
		if ok {
			out[comm] += cpu
		}
	}
	return out
}

// processCPU is the CPU time (user + system, seconds) of one live process.
func processCPU(pid int) float64 {
	_, cpu, _ := readStat("/proc/" + strconv.Itoa(pid) + "/stat")
	return cpu
}

// readStat reads a process's command name and CPU time (user + system,
// seconds) from its /proc/<pid>/stat.
func readStat(path string) (string, float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0, false // gone
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, false
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 13 { // fields 14 and 15 of stat: utime, stime
		return "", 0, false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return s[open+1 : close], (u + k) / clockTicks, true
}

// machineCPU is the CPU time (seconds) all cores spent busy since boot.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks
}

// cpuShare is the CPU spent per event during a measure, in microseconds, by
// the processes the bench cares about and by the whole machine (which adds
// the kernel's own work, such as loopback networking, done outside them).
type cpuShare struct {
	LoadGeneratorUs float64 `json:"load_generator_us_per_event,omitempty"`
	IngestUs        float64 `json:"ingest_us_per_event,omitempty"`
	WorkerUs        float64 `json:"worker_us_per_event,omitempty"`
	PostgresUs      float64 `json:"postgres_us_per_event"`
	RedisUs         float64 `json:"redis_us_per_event"`
	MachineUs       float64 `json:"machine_us_per_event"`
}

// selfCommand is this process's command name as /proc shows it (at most
// 15 bytes): the load generator runs here.
func selfCommand() string {
	b, _ := os.ReadFile("/proc/self/comm")
	return strings.TrimSpace(string(b))
}

type cpuMark struct {
	by      map[string]float64
	machine float64
}

func markCPU() cpuMark { return cpuMark{by: cpuByCommand(), machine: machineCPU()} }

func (m cpuMark) since(events int) cpuShare {
	now := markCPU()
	per := func(v float64) float64 { return v / float64(events) * 1e6 }
	self := selfCommand()
	return cpuShare{
		LoadGeneratorUs: per(now.by[self] - m.by[self]),
		IngestUs:        per(now.by["ingest"] - m.by["ingest"]),
		WorkerUs:        per(now.by["worker"] - m.by["worker"]),
		PostgresUs:      per(now.by["postgres"] - m.by["postgres"]),
		RedisUs:         per(now.by["redis-server"] - m.by["redis-server"]),
		MachineUs:       per(now.machine - m.machine),
	}
}
