package serverless

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/quietlog"
)

// SecretSource is where a secret is read: a secret of AWS Secrets Manager
// (SecretsManagerSecret) or a parameter of AWS Systems Manager Parameter
// Store (SSMParameter).
type SecretSource interface {
	// SecretValue returns the secret's current value. Its errors must
	// not contain the value.
	SecretValue(ctx context.Context) ([]byte, error)
	// String names the secret for logs and errors: its ARN or name,
	// never its value.
	String() string
}

// SecretsManagerSecret is a secret of AWS Secrets Manager, read with
// GetSecretValue (its AWSCURRENT version): its SecretString, or its
// SecretBinary when it has no string. The function needs
// secretsmanager:GetSecretValue on the secret, and kms:Decrypt on its key
// when that is a customer managed key.
type SecretsManagerSecret struct {
	Client *secretsmanager.Client
	// SecretID is the secret's ARN (or name).
	SecretID string
}

// SecretValue implements SecretSource.
func (s *SecretsManagerSecret) SecretValue(ctx context.Context) ([]byte, error) {
	out, err := s.Client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.SecretID)})
	if err != nil {
		return nil, fmt.Errorf("secretsmanager GetSecretValue %s: %w", s.SecretID, err)
	}
	switch {
	case out.SecretString != nil:
		return []byte(*out.SecretString), nil
	case out.SecretBinary != nil:
		return out.SecretBinary, nil
	}
	return nil, fmt.Errorf("secretsmanager GetSecretValue %s: the secret has no value", s.SecretID)
}

func (s *SecretsManagerSecret) String() string { return s.SecretID }

// SSMParameter is a parameter of AWS Systems Manager Parameter Store, read
// with GetParameter and WithDecryption, so that a SecureString parameter
// arrives decrypted. The function needs ssm:GetParameter on the parameter,
// and kms:Decrypt on its key when that is a customer managed key.
type SSMParameter struct {
	Client *ssm.Client
	// Name is the parameter's name or ARN.
	Name string
}

// SecretValue implements SecretSource.
func (p *SSMParameter) SecretValue(ctx context.Context) ([]byte, error) {
	out, err := p.Client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(p.Name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("ssm GetParameter %s: %w", p.Name, err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return nil, fmt.Errorf("ssm GetParameter %s: the parameter has no value", p.Name)
	}
	return []byte(*out.Parameter.Value), nil
}

func (p *SSMParameter) String() string { return p.Name }

// Defaults of SecretAuthenticator's zero-valued fields.
const (
	// DefaultSecretMaxAge is how long a secret's value is used before it
	// is read again: a token removed from the secret stops working within
	// it.
	DefaultSecretMaxAge = 5 * time.Minute
	// DefaultSecretMinRefresh is the least time between two reads of a
	// secret by one instance of the function.
	DefaultSecretMinRefresh = 10 * time.Second
	// DefaultSecretFetchTimeout bounds one read of a secret.
	DefaultSecretFetchTimeout = 5 * time.Second
)

// SecretAuthenticator is a tunnel.Authenticator configured by a secret:
// it reads the secret, turns its value into an Authenticator with Parse,
// and authenticates agents with that. A Lambda function keeps it across
// invocations, so the secret is read at the first $connect of an instance
// and then again:
//
//   - when the value is older than MaxAge, so that a token removed from
//     the secret is refused within MaxAge;
//   - when an agent presents a token the value does not accept, so that a
//     token just added to the secret works at once;
//   - in either case, at most once per MinRefreshInterval, whatever the
//     agents present, so that a stream of wrong tokens cannot make the
//     function hammer the secret store.
//
// A read that fails, or a value that Parse refuses, leaves the previous
// value in use, with a warning logged; until a first value has been read,
// every agent is refused with an internal error (500), never admitted. No
// value, token or hash of one appears in a log line or an error: errors
// name the secret by SecretSource.String.
//
// The zero value is not usable: Secret is required, unless Parse needs no
// value (then it is called with nil, and only once it succeeds). Fields
// must not change after the first call. A SecretAuthenticator is safe for
// concurrent use.
type SecretAuthenticator struct {
	// Secret is read for the value.
	Secret SecretSource
	// Parse turns the value into the Authenticator it configures. Nil
	// means tunnel.ParseStaticTokens: the value is a token file, one
	// token a line with its subject, names and IP lists. ctx bounds any
	// I/O it does (a JWK set to fetch, say). Its errors may quote the
	// value: the SecretAuthenticator redacts them before it logs them.
	Parse func(ctx context.Context, value []byte) (tunnel.Authenticator, error)
	// MaxAge is how long a value is used before the secret is read
	// again. Zero means DefaultSecretMaxAge.
	MaxAge time.Duration
	// MinRefreshInterval is the least time between the starts of two
	// reads. Zero means DefaultSecretMinRefresh.
	MinRefreshInterval time.Duration
	// FetchTimeout bounds a read of the secret and its Parse. Zero means
	// DefaultSecretFetchTimeout.
	FetchTimeout time.Duration
	// Logger receives a line when a value is loaded, and a warning or an
	// error when a read fails. Nil means slog.Default(), warnings and
	// errors only.
	Logger *slog.Logger

	// now is the clock; nil means time.Now.
	now func() time.Time

	cur atomic.Pointer[secretState]

	mu        sync.Mutex // serialises reads; guards the fields below
	attempted time.Time  // start of the last read
	lastErr   error      // why the last read failed, redacted; nil after a success
}

// secretState is the Authenticator of a value and when it was read.
type secretState struct {
	auth    tunnel.Authenticator
	digest  [sha256.Size]byte // of the value, to skip Parse when it has not changed
	fetched time.Time
	gen     uint64 // one more for every new Authenticator
}

var _ tunnel.Authenticator = (*SecretAuthenticator)(nil)

func (a *SecretAuthenticator) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (a *SecretAuthenticator) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return quietlog.New()
}

func (a *SecretAuthenticator) name() string {
	if a.Secret == nil {
		return "configuration"
	}
	return a.Secret.String()
}

// Authenticate implements tunnel.Authenticator.
func (a *SecretAuthenticator) Authenticate(ctx context.Context, r *http.Request) (tunnel.Identity, error) {
	st := a.cur.Load()
	if st == nil || (a.Secret != nil && a.clock().Sub(st.fetched) >= orDuration(a.MaxAge, DefaultSecretMaxAge)) {
		st = a.refresh(ctx)
	}
	if st == nil {
		a.mu.Lock()
		cause := a.lastErr
		a.mu.Unlock()
		return tunnel.Identity{}, &tunnel.Error{Code: tunnel.CodeInternal, Message: tunnel.ErrInternal.Message,
			Err: fmt.Errorf("serverless: no agent credentials: %s has not been read: %w", a.name(), cause)}
	}
	id, err := st.auth.Authenticate(ctx, r)
	var e *tunnel.Error
	if err == nil || a.Secret == nil || !errors.As(err, &e) || e.Code != tunnel.CodeUnauthorized || tunnel.TokenFromRequest(r) == "" {
		return id, err
	}
	// A token this value does not know: perhaps one added to the secret
	// since it was read.
	if next := a.refresh(ctx); next != nil && next.gen != st.gen {
		return next.auth.Authenticate(ctx, r)
	}
	return id, err
}

// refresh reads the secret unless a read started within
// MinRefreshInterval, and returns the state to use: the new one, or the
// previous one (nil if there is none) when the read failed or was skipped.
func (a *SecretAuthenticator) refresh(ctx context.Context) *secretState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.cur.Load()
	now := a.clock()
	if !a.attempted.IsZero() && now.Sub(a.attempted) < orDuration(a.MinRefreshInterval, DefaultSecretMinRefresh) {
		return st
	}
	if a.Secret == nil && st != nil {
		return st
	}
	a.attempted = now
	fctx, cancel := context.WithTimeout(ctx, orDuration(a.FetchTimeout, DefaultSecretFetchTimeout))
	defer cancel()
	var value []byte
	var err error
	if a.Secret != nil {
		value, err = a.Secret.SecretValue(fctx)
	}
	if err == nil {
		digest := sha256.Sum256(value)
		if st != nil && digest == st.digest {
			next := *st
			next.fetched = now
			a.cur.Store(&next)
			a.lastErr = nil
			return &next
		}
		parse := a.Parse
		if parse == nil {
			parse = parseTokenFile
		}
		var auth tunnel.Authenticator
		auth, err = parse(fctx, value)
		if err == nil {
			next := &secretState{auth: auth, digest: digest, fetched: now}
			if st != nil {
				next.gen = st.gen + 1
			}
			a.cur.Store(next)
			a.lastErr = nil
			a.log().Info("agent credentials loaded", slog.String("secret", a.name()), slog.Bool("changed", st != nil))
			return next
		}
		err = fmt.Errorf("%s: its value is refused: %w", a.name(), redact(err, value))
	}
	a.lastErr = err
	if st != nil {
		a.log().Warn("agent credentials could not be read again; the previous ones stay in use", slog.String("secret", a.name()), slog.Any("err", err))
	} else {
		a.log().Error("agent credentials could not be read; agents are refused until they are", slog.String("secret", a.name()), slog.Any("err", err))
	}
	return st
}

func parseTokenFile(_ context.Context, value []byte) (tunnel.Authenticator, error) {
	return tunnel.ParseStaticTokens(bytes.NewReader(value))
}

// quoted matches a Go-quoted string, as %q writes one.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// redact returns err's text without what may be part of value: quoted
// strings (a token file's errors quote the field at fault, which may be a
// token) and the first field of every line of value (a token file's
// tokens) of four bytes or more. The result wraps nothing, so that no
// caller can reach the original text.
func redact(err error, value []byte) error {
	msg := quoted.ReplaceAllString(err.Error(), `"[redacted]"`)
	sc := bufio.NewScanner(bytes.NewReader(value))
	sc.Buffer(nil, len(value)+1)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && len(f[0]) >= 4 {
			msg = strings.ReplaceAll(msg, f[0], "[redacted]")
		}
	}
	if v := strings.TrimSpace(string(value)); len(v) >= 4 {
		msg = strings.ReplaceAll(msg, v, "[redacted]")
	}
	return errors.New(msg)
}
