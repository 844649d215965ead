package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// supervise serves the current connection and reconnects when it drops,
// until the listener is closed or a reconnect is refused.
func (l *Listener) supervise(c *agentConn) {
	var err error
	defer func() {
		l.err = err
		l.client.CloseIdleConnections()
		close(l.done)
	}()
	attempt := 0
	for {
		l.emit(Event{Kind: EventConnected, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), Attempt: attempt})
		c.start()
		select {
		case <-l.closed:
			l.finish(c)
			return
		case <-c.done():
		}
		select {
		case <-l.closed:
			return
		default:
		}
		why := c.lost()
		if why == errConnectionLost {
			l.log.Warn("tunnel connection lost; reconnecting", slog.String("tunnel_id", c.est.TunnelID))
		}
		l.emit(Event{Kind: EventDisconnected, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), Err: why})
		c, attempt, err = l.reconnect(c.gateway)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				err = nil
			} else {
				l.log.Error("tunnel stopped: the gateway refused to resume it", slog.String("tunnel_id", l.ID()), slog.Any("err", err))
			}
			return
		}
		l.log.Info("tunnel reconnected", slog.String("tunnel_id", c.est.TunnelID), slog.String("url", c.est.PublicURL))
	}
}

// Reasons given by EventDisconnected.
var (
	errConnectionLost  = errors.New("connection to the gateway lost")
	errLifetimeReached = errors.New("json-mode connection reached its lifetime (API Gateway's 2 h limit); reconnecting ahead of it")
)

// reconnect dials until it succeeds, the gateway refuses for good, or the
// listener is closed (ErrClosed). Attempts go to the gateways in turn,
// starting with lost, the one whose connection dropped.
func (l *Listener) reconnect(lost int) (*agentConn, int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	b := &backoff{min: l.opts.minBackoff, max: l.opts.maxBackoff}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for attempt := 1; ; attempt++ {
		delay := b.next()
		gw := (lost + attempt - 1) % len(l.gateways)
		l.emit(Event{Kind: EventReconnecting, TunnelID: l.ID(), URL: l.URL(), Gateway: redact(l.gateways[gw]), Attempt: attempt, Delay: delay})
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return nil, attempt, ErrClosed
		case <-timer.C:
		}
		dctx, dcancel := context.WithTimeout(ctx, l.opts.handshakeTimeout)
		c, err := l.connect(dctx, gw)
		dcancel()
		if err == nil {
			return c, attempt, nil
		}
		if ctx.Err() != nil {
			return nil, attempt, ErrClosed
		}
		if permanent(err) {
			return nil, attempt, err
		}
		if errors.Is(err, ErrNameInUse) {
			l.log.Warn("tunnel name held by another agent; still asking for it", slog.String("tunnel_id", l.ID()), slog.Int("attempt", attempt))
			continue
		}
		l.log.Info("tunnel reconnect failed", slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.String("gateway", redact(l.gateways[gw])), slog.Any("err", err))
	}
}
