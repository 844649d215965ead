package backendtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// redisPing is PING as a RESP array of one bulk string, the form every
// Redis version accepts; redisPong is the only reply that counts.
const (
	redisPing = "*1\r\n$4\r\nPING\r\n"
	redisPong = "+PONG\r\n"
)

// maxReply bounds how much of an answer a probe reads: enough for any
// reply it accepts and for a readable excerpt of one it refuses.
const maxReply = 512

// probeRedis sends PING to addr over a new connection and requires the
// reply +PONG. A server that wants a password replies -NOAUTH, which is
// refused too: the tests could not use it. ctx bounds the whole exchange.
func probeRedis(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return &probeError{backend: "Redis", addr: addr, err: err}
	}
	defer conn.Close()
	notRedis := func(err error) error {
		return &probeError{backend: "Redis", addr: addr, answered: true, err: err}
	}
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return notRedis(err)
		}
	}
	if _, err := io.WriteString(conn, redisPing); err != nil {
		return notRedis(fmt.Errorf("send PING: %w", err))
	}
	// A reply line ends at the first newline; a server that never sends
	// one is cut off at maxReply bytes or at ctx's deadline.
	reply, err := bufio.NewReader(io.LimitReader(conn, maxReply)).ReadString('\n')
	switch {
	case reply == redisPong:
		return nil
	case reply == "" && errors.Is(err, io.EOF):
		return notRedis(errors.New("connection closed without a reply to PING"))
	case reply == "":
		return notRedis(fmt.Errorf("no reply to PING: %w", err))
	}
	return notRedis(fmt.Errorf("reply to PING is %s, want %q", excerpt(reply), redisPong))
}

// excerpt quotes the start of an answer for a message.
func excerpt(s string) string {
	const most = 80
	if len(s) > most {
		return fmt.Sprintf("%q...", s[:most])
	}
	return fmt.Sprintf("%q", s)
}
