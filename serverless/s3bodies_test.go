package serverless

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// s3Server is an S3-compatible server on loopback (gofakes3, in memory)
// with one bucket, counting the object PUTs and GETs it serves.
type s3Server struct {
	bodies     *S3Bodies
	puts, gets atomic.Int64
}

func newS3Server(t *testing.T) *s3Server {
	t.Helper()
	backend := s3mem.New()
	const bucket = "tunnel-bodies"
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	s := &s3Server{}
	fake := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1 { // an object, not the bucket
			switch r.Method {
			case http.MethodPut:
				s.puts.Add(1)
			case http.MethodGet:
				s.gets.Add(1)
			}
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := s3.New(s3.Options{
		Region:       dynamotest.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(dynamotest.AccessKeyID, dynamotest.SecretAccessKey, ""),
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		HTTPClient:   &http.Client{Transport: tr},
		// The fake takes plain payloads, not aws-chunked ones with
		// trailing checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	s.bodies = &S3Bodies{Client: client, Bucket: bucket, Prefix: "responses/"}
	return s
}

// TestS3Bodies forwards responses with chunks over the threshold kept in
// an S3-compatible bucket: the client gets them whole, the chunks are
// objects, and the pending rows hold their keys, not their bytes; a small
// response stays in its row.
func TestS3Bodies(t *testing.T) {
	t.Parallel()
	s3srv := newS3Server(t)
	meter := newDDBMeter()
	g := newGateway(t, gatewayConfig{bodies: s3srv.bodies, ddbOptions: meter.options})
	ln, _ := g.agent(t, echo)

	resp, body := g.do(t, http.MethodGet, ln.URL()+"/small", nil, nil)
	checkEcho(t, resp, body, http.MethodGet, "/small", nil)
	if n := s3srv.puts.Load() + s3srv.gets.Load(); n != 0 {
		t.Errorf("%d S3 calls for a small response, want 0", n)
	}

	big := randomBytes(1536 << 10)
	resp, body = g.do(t, http.MethodPost, ln.URL()+"/big", big, nil)
	checkEcho(t, resp, body, http.MethodPost, "/big", big)
	puts, gets := s3srv.puts.Load(), s3srv.gets.Load()
	if puts < 12 || gets != puts {
		t.Errorf("%d PUTs and %d GETs for a 1.5 MiB response, want a PUT and a GET per chunk", puts, gets)
	}
	// No row holds a chunk's bytes; the chunk rows hold their keys.
	out, err := g.ddbClient.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(meter.pendingTable), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for _, it := range out.Items {
		if d, ok := it["responseData"].(*types.AttributeValueMemberB); ok && len(d.Value) > 8<<10 {
			t.Errorf("row %v holds %d bytes of response", it["requestId"], len(d.Value))
		}
		if _, ok := it["bodyRef"]; ok {
			refs++
		}
	}
	if int64(refs) != puts {
		t.Errorf("%d rows refer to a body, want %d", refs, puts)
	}
}

// TestCostWithS3Bodies measures what TestCost measures with chunks over
// 8 KiB kept in S3, and prints the figures of docs/serverless.md's cost
// table; S3's requests are counted at the fake server.
func TestCostWithS3Bodies(t *testing.T) {
	t.Parallel()
	s3srv := newS3Server(t)
	meter := newDDBMeter()
	g := newGateway(t, gatewayConfig{bodies: s3srv.bodies, ddbOptions: meter.options})
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/bytes/")); err == nil {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(randomBytes(n))
			return
		}
		echo.ServeHTTP(w, r)
	}))
	if resp, _ := g.do(t, http.MethodGet, ln.URL()+"/warm", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up status %d", resp.StatusCode)
	}
	const (
		priceS3Put = 0.005 / 1000  // PUT, S3 Standard
		priceS3Get = 0.0004 / 1000 // GET
	)
	big := randomBytes(1536 << 10)
	for _, tt := range []struct {
		name   string
		method string
		path   string
		body   []byte
		want   int
	}{
		{"small GET", http.MethodGet, "/bytes/2", nil, 2},
		{"32 KiB response", http.MethodGet, "/bytes/32768", nil, 32768},
		{"1.5 MiB POST, echoed", http.MethodPost, "/echo", big, len(big)},
	} {
		s0, d0, p0, g0 := g.emu.Stats(), meter.snapshot(), s3srv.puts.Load(), s3srv.gets.Load()
		resp, body := g.do(t, tt.method, ln.URL()+tt.path, tt.body, nil)
		if resp.StatusCode != http.StatusOK || len(body) != tt.want || (tt.body != nil && !bytes.Equal(body, tt.body)) {
			t.Fatalf("%s: status %d, %d bytes back", tt.name, resp.StatusCode, len(body))
		}
		s1, d1 := g.emu.Stats(), meter.snapshot()
		puts, gets := s3srv.puts.Load()-p0, s3srv.gets.Load()-g0
		row := costRow{name: tt.name, invocations: s1.Invocations() - s0.Invocations(), defaults: s1.DefaultInvocations - s0.DefaultInvocations,
			units: s1.MeteredMessages - s0.MeteredMessages, after: d1.sub(d0)}
		dollars := row.dollars(row.after) + perMillion*(float64(puts)*priceS3Put+float64(gets)*priceS3Get)
		t.Logf("%-22s S3 bodies: DynamoDB %d reads, %d writes [%v], %.1f RCU, %.1f WCU; S3 %d PUTs, %d GETs; $%.2f per million",
			tt.name, row.after.reads(), row.after.writes(), row.after, row.after.rcu, row.after.wcu, puts, gets, dollars)
		if tt.want > 8<<10 && (puts == 0 || row.after.wcu > 20*float64(puts)) {
			t.Errorf("%s: %.0f WCU and %d PUTs: the body did not go to S3", tt.name, row.after.wcu, puts)
		}
	}
}
