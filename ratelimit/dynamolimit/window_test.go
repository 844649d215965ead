package dynamolimit

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		t          time.Time
		period     time.Duration
		start, end time.Time
	}{
		{"MidMinute", time.Unix(1_900_000_030, 5), time.Minute,
			time.Unix(1_900_000_020, 0), time.Unix(1_900_000_080, 0)},
		{"OnBoundary", time.Unix(1_900_000_020, 0), time.Minute,
			time.Unix(1_900_000_020, 0), time.Unix(1_900_000_080, 0)},
		{"LastNanosecond", time.Unix(1_900_000_079, 999_999_999), time.Minute,
			time.Unix(1_900_000_020, 0), time.Unix(1_900_000_080, 0)},
		{"SubSecondPeriod", time.Unix(10, 260_000_000), 100 * time.Millisecond,
			time.Unix(10, 200_000_000), time.Unix(10, 300_000_000)},
		{"OddPeriod", time.Unix(100, 0), 7 * time.Second,
			time.Unix(98, 0), time.Unix(105, 0)},
		{"BeforeEpoch", time.Unix(-1, 500_000_000), time.Second,
			time.Unix(-1, 0), time.Unix(0, 0)},
		{"BeforeEpochOnBoundary", time.Unix(-60, 0), time.Minute,
			time.Unix(-60, 0), time.Unix(0, 0)},
		{"TimeZoneIrrelevant", time.Unix(1_900_000_030, 0).In(time.FixedZone("x", 5*3600+1800)), time.Hour,
			time.Unix(1_899_997_200, 0), time.Unix(1_900_000_800, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start, end := window(tt.t, tt.period)
			if !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Errorf("window(%v, %v) = [%v, %v), want [%v, %v)", tt.t, tt.period, start, end, tt.start, tt.end)
			}
			if tt.t.Before(start) || !tt.t.Before(end) {
				t.Errorf("window(%v, %v) = [%v, %v) does not hold t", tt.t, tt.period, start, end)
			}
		})
	}
}
