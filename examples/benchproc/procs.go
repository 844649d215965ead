package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pprofHook is added to the main package of the binaries the benchmark
// builds: it serves net/http/pprof and runtime statistics on
// $TUNNEL_BENCH_PPROF.
//
//go:embed pprofhook.go
var pprofHook []byte

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// binaries are the executables of one benchmark run, all built from the
// same source.
type binaries struct {
	gateway string // cmd/tunnel, run as "tunnel gateway"
	agent   string // cmd/tunnel-agent
	bench   string // this program: the origin, and the agent side of -memory
}

// build compiles cmd/tunnel and cmd/tunnel-agent of the repository at root
// into dir, each with the profiling hook added to its main package, and
// this program, so that the tunnels of -memory's agent side run the same
// library as the agent binary.
func build(root, dir string) (binaries, error) {
	hook := filepath.Join(dir, "pprofhook.go")
	if err := os.WriteFile(hook, pprofHook, 0o644); err != nil {
		return binaries{}, err
	}
	b := binaryPaths(dir)
	for _, t := range []struct{ pkg, out string }{{"cmd/tunnel", b.gateway}, {"cmd/tunnel-agent", b.agent}, {"examples/benchproc", b.bench}} {
		args := []string{"build", "-o", t.out}
		if t.pkg != "examples/benchproc" {
			overlay, err := json.Marshal(map[string]map[string]string{"Replace": {
				filepath.Join(root, t.pkg, "zz_benchpprof.go"): hook,
			}})
			if err != nil {
				return binaries{}, err
			}
			ov := filepath.Join(dir, filepath.Base(t.out)+"-overlay.json")
			if err := os.WriteFile(ov, overlay, 0o644); err != nil {
				return binaries{}, err
			}
			args = append(args, "-overlay", ov)
		}
		cmd := exec.Command("go", append(args, "./"+t.pkg)...)
		cmd.Dir = root
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return binaries{}, fmt.Errorf("building %s: %w", t.pkg, err)
		}
	}
	return b, nil
}

// binariesIn returns the binaries in dir, building them first unless
// both are there: from the working tree of the repository at root, or
// from its revision rev.
func binariesIn(root, rev, dir string) (binaries, error) {
	b := binaryPaths(dir)
	_, err1 := os.Stat(b.gateway)
	_, err2 := os.Stat(b.agent)
	_, err3 := os.Stat(b.bench)
	if err1 == nil && err2 == nil && err3 == nil {
		return b, nil
	}
	if root == "" {
		var err error
		if root, err = repoRoot(); err != nil {
			return b, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, err
	}
	if rev != "" {
		src := filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return b, err
		}
		defer os.RemoveAll(src)
		archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, rev, src)
		archive.Stderr = os.Stderr
		if err := archive.Run(); err != nil {
			return b, fmt.Errorf("exporting revision %s: %w", rev, err)
		}
		root = src
	}
	return build(root, dir)
}

func binaryPaths(dir string) binaries {
	return binaries{
		gateway: filepath.Join(dir, "tunnel"),
		agent:   filepath.Join(dir, "tunnel-agent"),
		bench:   filepath.Join(dir, "benchproc"),
	}
}

// repoRoot is the directory of the go.work that ties the repository's
// modules together.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	w := strings.TrimSpace(string(out))
	if w == "" || w == "off" {
		return "", errors.New("not inside the repository's workspace (no go.work): run from the repository or give -repo")
	}
	return filepath.Dir(w), nil
}

// proc is a child process of the benchmark.
type proc struct {
	name  string
	cmd   *exec.Cmd
	pprof string // address of its profiling listener, "" if none
	stdin io.WriteCloser
	out   io.ReadCloser // its stdout, when asked for
	log   *os.File      // its stderr
}

// start runs a child process that dies with the benchmark, its stderr
// in a file of logDir. With pprof set, the child serves profiles there
// (the hook of build). With wantStdout, p.out is its standard output;
// otherwise it is discarded.
func start(logDir, name, pprof string, wantStdout bool, args ...string) (*proc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = os.Environ()
	if pprof != "" {
		cmd.Env = append(cmd.Env, "TUNNEL_BENCH_PPROF="+pprof)
	}
	log, err := os.CreateTemp(logDir, strings.ReplaceAll(name, "/", "-")+"-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stderr = log
	cmd.SysProcAttr = procAttr()
	p := &proc{name: name, cmd: cmd, pprof: pprof, log: log}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if wantStdout {
		if p.out, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return p, nil
}

// stop ends the process with SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.stdin.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "benchproc: %s (pid %d) did not exit within 10 s of SIGTERM: killed\n", p.name, p.pid())
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

// failed adds the end of the process's stderr to err.
func (p *proc) failed(err error) error {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Errorf("%w; %s said: %s", err, p.name, b)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cpu is the CPU time the process has used so far, user and system.
func (p *proc) cpu() (time.Duration, error) { return cpuOf(p.pid()) }

// cpuOf reads utime and stime of a process from /proc/<pid>/stat.
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU returns utime+stime of a /proc/<pid>/stat line. The
// command name, in parentheses, may hold spaces and parentheses itself,
// so fields are counted from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat line")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// rss is the process's resident set size, from /proc/<pid>/status.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(string(b))
}

// parseRSS returns VmRSS of a /proc/<pid>/status text, in bytes.
func parseRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", strings.TrimSpace(line))
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// runtimeStats is what the profiling hook's /debug/stats reports, after a
// garbage collection.
type runtimeStats struct {
	Goroutines int64 `json:"goroutines"`
	HeapInuse  int64 `json:"heap_inuse"`
	HeapAlloc  int64 `json:"heap_alloc"`
	StackInuse int64 `json:"stack_inuse"`
	Sys        int64 `json:"sys"`
	RSS        int64 `json:"rss"` // filled in from /proc
}

// stats asks the process's profiling listener for its runtime statistics.
func (p *proc) stats(ctx context.Context) (runtimeStats, error) {
	var s runtimeStats
	if err := getJSON(ctx, "http://"+p.pprof+"/debug/stats", &s); err != nil {
		return s, fmt.Errorf("%s: %w", p.name, err)
	}
	var err error
	s.RSS, err = rss(p.pid())
	return s, err
}

// profile saves the process's profile (a path under /debug/pprof/, such
// as "profile?seconds=5" or "heap") to file.
func (p *proc) profile(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.pprof+"/debug/pprof/"+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s profile: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s profile: %s", p.name, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitFor polls url until it answers with status want, for at most 30 s.
func waitFor(url string, want int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
