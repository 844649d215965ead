package tunneltest_test

import (
	"fmt"
	"io"
	"net/http"

	"github.com/http-tunnel/tunnel/tunneltest"
)

// A webhook test: the handler under test gets a public URL, and the test
// calls it the way a webhook sender would. In a real test, t is the test's
// *testing.T.
func ExampleExpose() {
	t := &exampleT{}
	defer t.cleanup()

	url := tunneltest.Expose(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "got %s %s?%s", r.Method, r.URL.Path, r.URL.RawQuery)
	}))

	resp, err := http.Post(url+"/webhook?id=42", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 got POST /webhook?id=42
}

// exampleT stands in for *testing.T, which only the test runner makes.
type exampleT struct{ cleanups []func() }

func (t *exampleT) Helper()                      {}
func (t *exampleT) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleT) Errorf(f string, args ...any) { fmt.Printf(f+"\n", args...) }
func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	http.DefaultClient.CloseIdleConnections()
}
