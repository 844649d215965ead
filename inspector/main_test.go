package inspector

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
