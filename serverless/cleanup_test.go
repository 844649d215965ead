package serverless

import (
	"encoding/json"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store"
)

// TestScheduledCleanupLeavesPendingToTTL checks the scheduled event: it
// deletes expired connection rows but neither scans nor deletes the
// pending table, whose rows DynamoDB's TTL removes for free.
func TestScheduledCleanupLeavesPendingToTTL(t *testing.T) {
	t.Parallel()
	meter := newDDBMeter()
	g := newGateway(t, gatewayConfig{ddbOptions: meter.options})
	ln, _ := g.agent(t, echo)
	if resp, _ := g.do(t, http.MethodGet, ln.URL()+"/x", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	pending := len(pendingRequests(t, g, meter))
	if pending == 0 {
		t.Fatal("no pending row")
	}
	// An expired tunnel record, which the cleanup must delete.
	stale := store.Record{TunnelID: "expired", ConnectionID: "conn-expired", Owner: "o",
		CreatedAt: time.Now().Add(-3 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)}
	if err := g.h.Store.Put(t.Context(), stale); err != nil {
		t.Fatal(err)
	}

	meter.mu.Lock()
	clear(meter.scanned)
	meter.mu.Unlock()
	ev, _ := json.Marshal(map[string]any{"source": "aws.events", "detail-type": "Scheduled Event"})
	if _, err := g.h.Invoke(t.Context(), ev); err != nil {
		t.Fatalf("scheduled event: %v", err)
	}
	meter.mu.Lock()
	scanned := maps.Clone(meter.scanned)
	meter.mu.Unlock()
	if len(scanned) != 1 || scanned[meter.pendingTable] {
		t.Errorf("the cleanup scanned %v; want the connections table alone, not %s", scanned, meter.pendingTable)
	}
	if got := len(pendingRequests(t, g, meter)); got != pending {
		t.Errorf("pending rows: %d after the cleanup, %d before; want them left to TTL", got, pending)
	}
	if _, err := g.h.Store.GetByConnection(t.Context(), stale.ConnectionID); err == nil {
		t.Error("the expired record is still there")
	}
	out, err := g.ddbClient.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(meter.pendingTable), Select: types.SelectCount})
	if err != nil || out.Count != int32(pending) {
		t.Errorf("pending table holds %v rows (%v), want %d", out, err, pending)
	}
}
