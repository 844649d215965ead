package protocol

import "fmt"

// validate checks the rules that both Marshal and Unmarshal enforce, so that
// every message Unmarshal returns can be encoded again and nothing Marshal
// writes is rejected by a peer using this package.
//
// The rules are deliberately structural: the members a receiver needs to
// route the message (its type and request ID) or that the original decoders
// require, and no negative numbers, which no sender produces and the
// original's unsigned fields reject. Rules that need context — whether a
// chunk index fits its count, whether a status code is in range, whether a
// tunnel name is a valid label — belong to the receiver, which can answer an
// [Error] carrying the request ID; a decode failure would lose it.
func validate(m Message) error {
	switch m := m.(type) {
	case *Ping, *Pong, *Drain:
		return nil
	case *Ready:
		return nonNegative(counts{{"version", int64(m.Version)}})
	case *ConnectionEstablished:
		switch {
		case m.ConnectionID == "":
			return missing("connection_id")
		case m.TunnelID == "":
			return missing("tunnel_id")
		case m.PublicURL == "":
			return missing("public_url")
		}
		if err := nonNegative(counts{{"version", int64(m.Version)}}); err != nil || m.Limits == nil {
			return err
		}
		l := m.Limits
		return nonNegative(counts{
			{"limits.max_body_bytes", l.MaxBodyBytes},
			{"limits.max_message_bytes", int64(l.MaxMessageBytes)},
			{"limits.max_frame_bytes", int64(l.MaxFrameBytes)},
			{"limits.heartbeat_interval_ms", l.HeartbeatMillis},
			{"limits.request_timeout_ms", l.RequestTimeoutMillis},
		})
	case *HTTPRequest:
		switch {
		case m.RequestID == "":
			return missing("request_id")
		case m.ChunkIndex == 0 && m.Method == "":
			return missing("method")
		case m.ChunkIndex == 0 && m.URI == "":
			return missing("uri")
		}
		return nonNegative(counts{
			{"timestamp", m.Timestamp},
			{"chunk_index", int64(m.ChunkIndex)},
			{"chunk_count", int64(m.ChunkCount)},
			{"body_size", m.BodySize},
		})
	case *HTTPResponse:
		if m.RequestID == "" {
			return missing("request_id")
		}
		return nonNegative(counts{
			{"status_code", int64(m.StatusCode)},
			{"processing_time_ms", m.ProcessingTimeMillis},
			{"chunk_index", int64(m.ChunkIndex)},
			{"chunk_count", int64(m.ChunkCount)},
			{"body_size", m.BodySize},
		})
	case *Error:
		if m.Code == "" {
			return missing("code")
		}
		return nil
	}
	return fmt.Errorf("%w: %T is not a message of this package", ErrUnknownType, m)
}

// counts names the integer members of one message; a fixed-size array keeps
// validation free of allocations on the success path.
type counts [5]struct {
	member string
	n      int64
}

func nonNegative(c counts) error {
	for _, f := range c {
		if f.n < 0 {
			return fmt.Errorf("%w: %s is negative", ErrMalformed, f.member)
		}
	}
	return nil
}

func missing(member string) error {
	return fmt.Errorf("%w: %s is required", ErrMalformed, member)
}
