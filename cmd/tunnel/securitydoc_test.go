package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The worked example of docs/security.md is a transcript: fenced blocks,
// each after a line workedExampleMarker, of commands ("$ " lines, with
// their continuation lines and here-documents) each followed by what it
// prints. TestSecurityWorkedExample runs it.

// workedExampleMarker precedes every block of the worked example.
const workedExampleMarker = "<!-- tested: security-worked-example -->"

// docCommand is one command of a transcript.
type docCommand struct {
	line       int    // of the "$ " line in the document, for messages
	script     string // for sh -c: continuation lines and here-documents included
	background bool   // it ended with "&": it runs on, and want is what it prints first
	want       []string
}

// heredoc finds the delimiter of a here-document in a command line.
var heredoc = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?`)

// parseTranscript returns the commands of the blocks that follow marker
// in doc, in order.
func parseTranscript(doc, marker string) ([]docCommand, error) {
	lines := strings.Split(doc, "\n")
	var cmds []docCommand
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != marker {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			return nil, fmt.Errorf("line %d: the marker is not followed by a fenced block", i+1)
		}
		i += 2
		for ; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			text, ok := strings.CutPrefix(lines[i], "$ ")
			if !ok {
				if len(cmds) == 0 {
					return nil, fmt.Errorf("line %d: output before any command", i+1)
				}
				last := &cmds[len(cmds)-1]
				last.want = append(last.want, lines[i])
				continue
			}
			c := docCommand{line: i + 1, script: text}
			for strings.HasSuffix(lines[i], `\`) && i+1 < len(lines) {
				i++
				c.script += "\n" + lines[i]
			}
			if m := heredoc.FindStringSubmatch(c.script); m != nil {
				for i++; i < len(lines) && lines[i] != m[1]; i++ {
					c.script += "\n" + lines[i]
				}
				c.script += "\n" + m[1]
			}
			if s, ok := strings.CutSuffix(strings.TrimSpace(c.script), "&"); ok {
				c.script, c.background = s, true
			}
			cmds = append(cmds, c)
		}
		if i == len(lines) {
			return nil, errors.New("a fenced block of the worked example is not closed")
		}
	}
	return cmds, nil
}

func TestParseTranscript(t *testing.T) {
	t.Parallel()
	doc := "intro\n" + workedExampleMarker + "\n```console\n" +
		"$ cat > f <<'EOF'\na b\n$ not a command\nEOF\n" +
		"$ server --flag \\\n    --other &\nready\n" +
		"$ echo hi\nhi\n```\n\nuntested:\n```console\n$ rm -rf /\n```\n"
	got, err := parseTranscript(doc, workedExampleMarker)
	want := []docCommand{
		{line: 4, script: "cat > f <<'EOF'\na b\n$ not a command\nEOF"},
		{line: 8, script: "server --flag \\\n    --other ", background: true, want: []string{"ready"}},
		{line: 11, script: "echo hi", want: []string{"hi"}},
	}
	if err != nil || len(got) != len(want) {
		t.Fatalf("parseTranscript = %+v, %v; want %+v", got, err, want)
	}
	for i := range want {
		if got[i].line != want[i].line || got[i].script != want[i].script || got[i].background != want[i].background || !slices.Equal(got[i].want, want[i].want) {
			t.Errorf("command %d = %+v; want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseTranscript(workedExampleMarker+"\n```console\n$ echo\n", workedExampleMarker); err == nil {
		t.Error("an unclosed block parsed")
	}
}

// TestSecurityWorkedExample runs the worked example of docs/security.md
// against the tunnel binary, on loopback: its gateway and agents in the
// background, each command in turn, and checks that each prints what the
// document says, which states the example's outcomes: Alice gets her
// names and is refused Bob's, the Basic-auth tunnel answers 401 then 200,
// the IP-allow-list tunnel 200 to its address and 403 to another, Carol's
// JWT takes her name, an unknown token is refused. No secret of the
// example shows in anything the gateway or the agents printed.
func TestSecurityWorkedExample(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the example's second client address, 127.0.0.2, is this machine's on Linux only")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the worked example needs curl")
		}
		t.Skip("the worked example needs curl")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := parseTranscript(string(doc), workedExampleMarker)
	if err != nil {
		t.Fatalf("docs/security.md: %v", err)
	}
	// The outcomes the example must show: a document that lost one would
	// still pass its own transcript.
	var said []string
	for _, c := range cmds {
		said = append(said, c.want...)
	}
	for _, outcome := range []*regexp.Regexp{
		regexp.MustCompile(`^gateway listening on 127\.0\.0\.1:\$PORT `),
		regexp.MustCompile(`^Forwarding  http://alice-app\.localhost:\$PORT -> `),
		regexp.MustCompile(`forbidden: tunnel name bob-app is not allowed for this agent$`),
		regexp.MustCompile(`^Protected   basic auth`),
		regexp.MustCompile(`^401$`),
		regexp.MustCompile(`^Protected   allow `),
		regexp.MustCompile(`^403$`),
		regexp.MustCompile(`^200$`),
		regexp.MustCompile(`^Forwarding  http://carol-app\.localhost:\$PORT -> `),
		regexp.MustCompile(`unauthorized: invalid agent token$`),
		regexp.MustCompile(`^exit status 1$`),
	} {
		if !slices.ContainsFunc(said, outcome.MatchString) {
			t.Errorf("the worked example shows no line matching %s", outcome)
		}
	}

	bin := buildCommand(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "the team's app")
	}))
	t.Cleanup(app.Close)
	_, appPort, _ := net.SplitHostPort(app.Listener.Addr().String())
	vars := map[string]string{"PORT": freePort(t), "APP": appPort}
	expand := func(s string) string {
		return os.Expand(s, func(name string) string {
			if v, ok := vars[name]; ok {
				return v
			}
			return "$" + name
		})
	}
	env := []string{"PATH=" + filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LC_ALL=C"}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	dir := t.TempDir()

	var outputs []*output
	var background []*groupCmd
	t.Cleanup(func() {
		for _, g := range background {
			g.stop()
		}
	})
	for _, c := range cmds {
		out := &output{}
		outputs = append(outputs, out)
		want := make([]string, len(c.want))
		for i, w := range c.want {
			want[i] = expand(w)
		}
		if c.background {
			g, err := startGroup(dir, env, c.script, out)
			if err != nil {
				t.Fatalf("docs/security.md:%d: %v", c.line, err)
			}
			background = append(background, g)
			if !out.lines(want, g.exited) {
				t.Fatalf("docs/security.md:%d: %s\nprinted:\n%s\nwant, among its lines:\n%s", c.line, c.script, out, strings.Join(want, "\n"))
			}
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		cmd := exec.CommandContext(ctx, "sh", "-c", c.script)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
		err := cmd.Run()
		cancel()
		if got := splitLines(out.String()); err != nil || !slices.Equal(got, want) {
			t.Fatalf("docs/security.md:%d: %s\n%v; printed:\n%s\nwant:\n%s", c.line, c.script, err, out, strings.Join(want, "\n"))
		}
	}

	for _, g := range background {
		g.stop()
	}
	secrets := exampleSecrets(t, dir, cmds)
	if len(secrets) < 6 {
		t.Fatalf("found %d secrets in the example; want the two tokens, the JWT secret, the JWT, the unknown token and the password", len(secrets))
	}
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out.String(), s) {
				t.Errorf("a secret of the example shows in what a command printed:\n%s", out)
			}
		}
	}
}

// splitLines returns the lines of s, without their newlines.
func splitLines(s string) []string {
	var lines []string
	for line := range strings.Lines(s) {
		lines = append(lines, strings.TrimSuffix(line, "\n"))
	}
	return lines
}

// lines waits until the lines written include want, in order (other
// lines may come between), and reports whether they did before ended was
// closed or waitTimeout passed.
func (o *output) lines(want []string, ended <-chan struct{}) bool {
	return o.until(func() bool {
		i := 0
		for line := range strings.Lines(o.String()) {
			if i < len(want) && strings.TrimSuffix(line, "\n") == want[i] && strings.HasSuffix(line, "\n") {
				i++
			}
		}
		return i == len(want)
	}, ended)
}

// groupCmd is a shell command left running, in a process group of its
// own with what it starts.
type groupCmd struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the shell has exited and its output ended
}

// startGroup starts script with sh in dir, with env, writing its output
// to out.
func startGroup(dir string, env []string, script string, out *output) (*groupCmd, error) {
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &groupCmd{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(g.exited)
	}()
	return g, nil
}

// stop interrupts the group, as Ctrl-C would, and waits for it to end:
// its output ends when every process of the group has closed it. Those
// that outlive waitTimeout are killed.
func (g *groupCmd) stop() {
	syscall.Kill(-g.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(waitTimeout):
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.exited
	}
}

// freePort returns a port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// exampleSecrets returns the secrets the example used: the tokens of its
// token file, its JWT secret, the passwords of its Basic credentials file,
// and every TUNNEL_TOKEN its commands set.
func exampleSecrets(t *testing.T, dir string, cmds []docCommand) []string {
	t.Helper()
	var secrets []string
	read := func(name string, each func(line string)) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("the example wrote no %s: %v", name, err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
				each(line)
			}
		}
	}
	read("team.tokens", func(line string) { secrets = append(secrets, strings.Fields(line)[0]) })
	read("team.jwt-secret", func(line string) { secrets = append(secrets, line) })
	read("alice-app.auth", func(line string) {
		_, password, _ := strings.Cut(line, ":")
		secrets = append(secrets, password)
	})
	token := regexp.MustCompile(`TUNNEL_TOKEN=(\S+)`)
	for _, c := range cmds {
		for _, m := range token.FindAllStringSubmatch(c.script, -1) {
			secrets = append(secrets, m[1])
		}
	}
	slices.Sort(secrets)
	return slices.Compact(secrets)
}
