package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"slices"
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
		l.emit(Event{Kind: EventConnected, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), Attempt: attempt, Transport: c.transport})
		c.start()
		from, wait := c.gateway, true
		var why error
		select {
		case <-l.closed:
			l.finish(c)
			return
		case <-c.done():
			why = c.lost()
		case <-c.goingAway():
			// The gateway is shutting down: move at once, to the next
			// gateway of the list first, and leave this connection to
			// carry what it carries until the gateway closes it.
			why = errGatewayGoingAway
			l.retire(c)
			from, wait = c.gateway+1, false
		}
		select {
		case <-l.closed:
			return
		default:
		}
		switch why {
		case errConnectionLost:
			l.log.Warn("tunnel connection lost; reconnecting", slog.String("tunnel_id", c.est.TunnelID))
		case errGatewayGoingAway:
			l.log.Info("tunnel gateway going away; moving", slog.String("tunnel_id", c.est.TunnelID))
		}
		l.emit(Event{Kind: EventDisconnected, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), Err: why})
		c, attempt, err = l.reconnect(from%len(l.gateways), wait)
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
	errConnectionLost   = errors.New("connection to the gateway lost")
	errLifetimeReached  = errors.New("json-mode connection reached its lifetime (API Gateway's 2 h limit); reconnecting ahead of it")
	errGatewayGoingAway = errors.New("the gateway is shutting down; moving to another")
)

// retire keeps c, a connection the gateway told to go away, serving the
// streams it has (and any the gateway still opens on it) until it ends;
// finish closes it if the Listener closes first.
func (l *Listener) retire(c *agentConn) {
	l.mu.Lock()
	l.retiring = append(l.retiring, c)
	l.mu.Unlock()
	go func() {
		<-c.done()
		l.mu.Lock()
		l.retiring = slices.DeleteFunc(l.retiring, func(r *agentConn) bool { return r == c })
		l.mu.Unlock()
	}()
}

// reconnect dials until it succeeds, the gateway refuses for good, or the
// listener is closed (ErrClosed). Attempts go to the gateways in turn,
// starting with gateway number first; without wait, the first attempt is
// made at once.
func (l *Listener) reconnect(first int, wait bool) (*agentConn, int, error) {
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
	var last error // why the previous attempt failed
	for attempt := 1; ; attempt++ {
		delay := b.next()
		if attempt == 1 && !wait {
			delay = 0
		}
		gw := (first + attempt - 1) % len(l.gateways)
		l.emit(Event{Kind: EventReconnecting, TunnelID: l.ID(), URL: l.URL(), Gateway: redact(l.gateways[gw]), Attempt: attempt, Delay: delay, Err: last})
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
		last = err
		if errors.Is(err, ErrNameInUse) {
			l.log.Warn("tunnel name held by another agent; still asking for it", slog.String("tunnel_id", l.ID()), slog.Int("attempt", attempt))
			continue
		}
		l.log.Info("tunnel reconnect failed", slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.String("gateway", redact(l.gateways[gw])), slog.Any("err", err))
	}
}
