package dynamostore

import (
	"testing"

	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// TestCleanupConnections checks that CleanupConnections deletes the
// expired rows of the connections table and reads nothing of the pending
// table: its rows, expired or not, are left to DynamoDB's TTL.
func TestCleanupConnections(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	const expired, live = 10, 4
	seedStore(t, s, opts, expired, live)
	pendingBefore := countRows(t, client, opts.PendingTable)

	st, err := s.CleanupConnections(t.Context())
	if err != nil {
		t.Fatalf("CleanupConnections: %v", err)
	}
	// 3 connection-table rows per unit, as TestCleanup seeds them.
	if st.Scanned != 3*(expired+live) || st.Expired != 3*expired || st.Deleted != 3*expired {
		t.Errorf("stats = %+v, want %d scanned, %d expired and deleted: the connections table alone", st, 3*(expired+live), 3*expired)
	}
	if n := countRows(t, client, opts.ConnectionsTable); n != 3*live {
		t.Errorf("connection-table rows after = %d, want %d", n, 3*live)
	}
	if n := countRows(t, client, opts.PendingTable); n != pendingBefore || n != expired+live {
		t.Errorf("pending rows after = %d, want all %d kept for TTL", n, expired+live)
	}
}
