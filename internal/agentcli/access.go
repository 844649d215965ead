package agentcli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"unicode"

	"github.com/http-tunnel/tunnel"
)

// The agent asks the gateway to protect its tunnel's public URL: HTTP
// Basic authentication, a bearer token, and lists of client addresses to
// admit or refuse (tunnel.WithBasicAuth, WithBearerAuth, WithAllowIPs,
// WithDenyIPs). The gateway checks them before a request reaches the
// agent. Credentials come from files or the environment, never from the
// command line, which every user of the machine can read.

// Environment variables with the credentials of the tunnel's public URL,
// read when no file flag gives them.
const (
	EnvBasicAuth  = "TUNNEL_BASIC_AUTH"  // user:password, for --basic-auth-file
	EnvBearerAuth = "TUNNEL_BEARER_AUTH" // a token, for --bearer-auth-file
)

// accessConfig is what the agent asks the gateway to require of public
// clients. Passwords and tokens are secrets: never logged or printed.
type accessConfig struct {
	basic  []tunnel.BasicCredential
	bearer []tunnel.Token
	allow  []string // IP addresses and CIDR prefixes, as given
	deny   []string
}

// accessFlags are the access flags as given, before the files are read.
type accessFlags struct {
	basicFiles, bearerFiles listFlag
	allow, deny             listFlag
}

// register defines the access flags on fs.
func (f *accessFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.basicFiles, "basic-auth-file", "`file` of user:password lines: the public URL asks for HTTP Basic authentication with one of them (repeatable; default $"+EnvBasicAuth+", one user:password)")
	fs.Var(&f.bearerFiles, "bearer-auth-file", "`file` of tokens, one a line: the public URL asks for \"Authorization: Bearer\" with one of them (repeatable; default $"+EnvBearerAuth+", one token)")
	fs.Var(&f.allow, "allow-ip", "client `addresses` (IPs or CIDR prefixes, comma-separated; repeatable) that alone may reach the public URL; others get 403")
	fs.Var(&f.deny, "deny-ip", "client `addresses` (IPs or CIDR prefixes, comma-separated; repeatable) that get 403")
}

// load reads the credential files (or the environment, without them) and
// checks the address lists. Errors name a file and its line, never a
// password or token.
func (f *accessFlags) load(getenv func(string) string) (accessConfig, error) {
	var a accessConfig
	for _, file := range f.basicFiles {
		creds, err := readBasicAuth(file)
		if err != nil {
			return accessConfig{}, err
		}
		a.basic = append(a.basic, creds...)
	}
	if len(f.basicFiles) == 0 {
		if v := getenv(EnvBasicAuth); v != "" {
			c, err := parseBasicCredential(v)
			if err != nil {
				return accessConfig{}, fmt.Errorf("$%s: %w", EnvBasicAuth, err)
			}
			a.basic = append(a.basic, c)
		}
	}
	for _, file := range f.bearerFiles {
		tokens, err := readBearerTokens(file)
		if err != nil {
			return accessConfig{}, err
		}
		a.bearer = append(a.bearer, tokens...)
	}
	if len(f.bearerFiles) == 0 {
		if v := strings.TrimSpace(getenv(EnvBearerAuth)); v != "" {
			if strings.ContainsFunc(v, unicode.IsSpace) {
				return accessConfig{}, fmt.Errorf("$%s: a token must not contain spaces", EnvBearerAuth)
			}
			a.bearer = append(a.bearer, tunnel.Token(v))
		}
	}
	for _, l := range []struct {
		flag string
		in   listFlag
		out  *[]string
	}{{"--allow-ip", f.allow, &a.allow}, {"--deny-ip", f.deny, &a.deny}} {
		for _, item := range l.in {
			for s := range strings.SplitSeq(item, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				if !validPrefix(s) {
					return accessConfig{}, Usagef("%s %q: want an IP address or a CIDR prefix, such as 203.0.113.7 or 10.0.0.0/8", l.flag, s)
				}
				*l.out = append(*l.out, s)
			}
		}
	}
	return a, nil
}

// validPrefix reports whether s is an IP address or a CIDR prefix, the
// forms tunnel.WithAllowIPs takes.
func validPrefix(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// options returns the tunnel options that ask for a.
func (a accessConfig) options() []tunnel.Option {
	var opts []tunnel.Option
	for _, c := range a.basic {
		opts = append(opts, tunnel.WithBasicAuth(c.User, string(c.Password)))
	}
	for _, t := range a.bearer {
		opts = append(opts, tunnel.WithBearerAuth(string(t)))
	}
	if len(a.allow) > 0 {
		opts = append(opts, tunnel.WithAllowIPs(a.allow...))
	}
	if len(a.deny) > 0 {
		opts = append(opts, tunnel.WithDenyIPs(a.deny...))
	}
	return opts
}

// users returns the users of the Basic credentials, which are no secret.
func (a accessConfig) users() []string {
	users := make([]string, 0, len(a.basic))
	for _, c := range a.basic {
		users = append(users, c.User)
	}
	return users
}

// empty reports whether a asks for nothing.
func (a accessConfig) empty() bool {
	return len(a.basic)+len(a.bearer)+len(a.allow)+len(a.deny) == 0
}

// readBasicAuth reads a file of user:password lines. Surrounding spaces
// are trimmed; blank lines and lines starting with # are ignored.
func readBasicAuth(path string) ([]tunnel.BasicCredential, error) {
	var creds []tunnel.BasicCredential
	err := readLines(path, "--basic-auth-file", func(line string) error {
		c, err := parseBasicCredential(line)
		creds = append(creds, c)
		return err
	})
	return creds, err
}

// parseBasicCredential parses user:password. Its errors show neither.
func parseBasicCredential(s string) (tunnel.BasicCredential, error) {
	user, password, ok := strings.Cut(s, ":")
	if !ok || user == "" || password == "" {
		return tunnel.BasicCredential{}, errors.New("want user:password, with a user and a password")
	}
	return tunnel.BasicCredential{User: user, Password: tunnel.Token(password)}, nil
}

// readBearerTokens reads a file of tokens, one a line, as readBasicAuth
// reads its lines.
func readBearerTokens(path string) ([]tunnel.Token, error) {
	var tokens []tunnel.Token
	err := readLines(path, "--bearer-auth-file", func(line string) error {
		if strings.ContainsFunc(line, unicode.IsSpace) {
			return errors.New("a token must not contain spaces")
		}
		tokens = append(tokens, tunnel.Token(line))
		return nil
	})
	return tokens, err
}

// readLines calls use with each line of the file at path that is neither
// blank nor a comment (starting with #), trimmed. Its errors name flag,
// the file and the line; the file must hold at least one such line.
func readLines(path, flag string, use func(string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if err := use(text); err != nil {
			return fmt.Errorf("%s %s, line %d: %w", flag, path, line, err)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %s holds no credential", flag, path)
	}
	return nil
}

// listFlag is a flag.Value that collects every value given.
type listFlag []string

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

// Set implements flag.Value.
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}
