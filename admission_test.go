package tunnel_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/store"
)

// failingStore fails every Put.
type failingStore struct{ store.Store }

func (failingStore) Put(context.Context, store.Record) error { return errors.New("backend down") }

func TestAdmit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := &tunnel.Server{BaseURL: "https://gw.example.com:8443", Logger: quiet}

	t.Run("generated name", func(t *testing.T) {
		rec, est, err := srv.Admit(ctx, tunnel.Admission{Identity: tunnel.Identity{Subject: "alice"}, Ready: &protocol.Ready{Version: protocol.Version}})
		if err != nil {
			t.Fatal(err)
		}
		if est.TunnelID == "" || est.TunnelID != rec.TunnelID || est.ConnectionID != rec.ConnectionID || est.ResumeToken == "" {
			t.Fatalf("answer %+v does not match record %+v", est, rec)
		}
		// The domain defaults to BaseURL's host, and the port stays.
		if want := "https://" + rec.TunnelID + ".gw.example.com:8443"; est.PublicURL != want || est.SubdomainURL != want || rec.PublicURL != want {
			t.Errorf("public URL %q, subdomain URL %q, record %q; want %q", est.PublicURL, est.SubdomainURL, rec.PublicURL, want)
		}
		if want := "https://gw.example.com:8443/" + rec.TunnelID; est.PathBasedURL != want {
			t.Errorf("path URL %q, want %q", est.PathBasedURL, want)
		}
		if rec.Subject != "alice" || rec.Version != protocol.Version || rec.Released {
			t.Errorf("record %+v: want subject alice, version %d, not released", rec, protocol.Version)
		}
		if d := time.Until(rec.ExpiresAt); d <= 0 || d > tunnel.DefaultLeaseTTL {
			t.Errorf("record expires in %v, want within the default lease %v", d, tunnel.DefaultLeaseTTL)
		}
		if est.Limits == nil || est.Limits.HeartbeatMillis != tunnel.DefaultHeartbeat.Milliseconds() || est.Limits.RequestTimeoutMillis != tunnel.DefaultResponseTimeout.Milliseconds() {
			t.Errorf("limits %+v, want the Server's heartbeat and response timeout", est.Limits)
		}
	})

	t.Run("version is the lower of both sides", func(t *testing.T) {
		for _, v := range []int{0, protocol.Version, protocol.Version + 7} {
			rec, est, err := srv.Admit(ctx, tunnel.Admission{Ready: &protocol.Ready{Version: v}})
			if err != nil {
				t.Fatal(err)
			}
			want := min(v, protocol.Version)
			if est.Version != want || rec.Version != want {
				t.Errorf("agent version %d: answered %d, recorded %d; want %d", v, est.Version, rec.Version, want)
			}
		}
	})

	t.Run("name, resume and takeover", func(t *testing.T) {
		ident := tunnel.Identity{Subject: "bob"}
		rec, est, err := srv.Admit(ctx, tunnel.Admission{Identity: ident, Ready: &protocol.Ready{Version: 1, Name: "bobs-app"}, ConnectionID: "conn-1", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if rec.TunnelID != "bobs-app" || rec.ConnectionID != "conn-1" || time.Until(rec.ExpiresAt) < 59*time.Minute {
			t.Fatalf("record %+v: want the name, the given connection ID and the given TTL", rec)
		}
		// Another agent may not take the name; the same one resumes it.
		_, _, err = srv.Admit(ctx, tunnel.Admission{Identity: ident, Ready: &protocol.Ready{Version: 1, Name: "bobs-app"}})
		if !errors.Is(err, tunnel.ErrNameInUse) {
			t.Fatalf("second claim: err = %v, want name_in_use", err)
		}
		rec2, _, err := srv.Admit(ctx, tunnel.Admission{Identity: ident, Ready: &protocol.Ready{Version: 1, TunnelID: "bobs-app", ResumeToken: est.ResumeToken}})
		if err != nil || rec2.TunnelID != "bobs-app" || rec2.ConnectionID == "conn-1" {
			t.Fatalf("resume: %+v, %v", rec2, err)
		}
		// The resume token is bound to the subject.
		_, _, err = srv.Admit(ctx, tunnel.Admission{Identity: tunnel.Identity{Subject: "mallory"}, Ready: &protocol.Ready{Version: 1, TunnelID: "bobs-app", ResumeToken: est.ResumeToken}})
		if !errors.Is(err, tunnel.ErrNameInUse) {
			t.Fatalf("resume under another subject: err = %v, want name_in_use", err)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name  string
			srv   *tunnel.Server
			a     tunnel.Admission
			want  tunnel.Code
			cause string
		}{
			{"no ready", srv, tunnel.Admission{}, tunnel.CodeInvalidRequest, ""},
			{"invalid name", srv, tunnel.Admission{Ready: &protocol.Ready{Name: "Not_A_Label"}}, tunnel.CodeInvalidRequest, ""},
			{"resume without id", srv, tunnel.Admission{Ready: &protocol.Ready{ResumeToken: "x"}}, tunnel.CodeInvalidRequest, ""},
			{"no base URL", &tunnel.Server{Logger: quiet}, tunnel.Admission{Ready: &protocol.Ready{}}, tunnel.CodeInternal, "BaseURL"},
			{"store fails", &tunnel.Server{BaseURL: "http://gw", Store: failingStore{}, Logger: quiet}, tunnel.Admission{Ready: &protocol.Ready{}}, tunnel.CodeInternal, "backend down"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := tt.srv.Admit(ctx, tt.a)
				var e *tunnel.Error
				if !errors.As(err, &e) || e.Code != tt.want {
					t.Fatalf("err = %v, want code %s", err, tt.want)
				}
				if tt.cause != "" && (e.Err == nil || !strings.Contains(e.Err.Error(), tt.cause)) {
					t.Errorf("cause %v does not mention %q", e.Err, tt.cause)
				}
				if e.Code == tunnel.CodeInternal && e.Message != tunnel.ErrInternal.Message {
					t.Errorf("internal error message %q leaks details", e.Message)
				}
			})
		}
	})

	t.Run("Admission.BaseURL when the Server has none", func(t *testing.T) {
		s := &tunnel.Server{Domain: "tunnels.test", Logger: quiet}
		rec, est, err := s.Admit(ctx, tunnel.Admission{Ready: &protocol.Ready{Name: "web"}, BaseURL: "http://127.0.0.1:8080/"})
		if err != nil {
			t.Fatal(err)
		}
		if rec.PublicURL != "http://web.tunnels.test:8080" || est.PathBasedURL != "http://127.0.0.1:8080/web" {
			t.Errorf("URLs %q and %q", rec.PublicURL, est.PathBasedURL)
		}
	})
}
