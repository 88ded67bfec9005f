package correlator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Checkpoints save one partition each, spread over the interval, and come
// less often when saving takes long.
func TestSnapshotTick(t *testing.T) {
	c := &Correlator{o: Options{SnapshotInterval: 10 * time.Second}, parts: map[int]*partition{}}
	require.Equal(t, 10*time.Second, c.snapshotTick(), "no partition yet")
	for i := range 4 {
		c.parts[i] = &partition{id: i}
	}
	require.Equal(t, 2500*time.Millisecond, c.snapshotTick())
	for i := 4; i < 40; i++ {
		c.parts[i] = &partition{id: i}
	}
	require.Equal(t, 625*time.Millisecond, c.snapshotTick(), "at least a sixteenth of the interval")
	c.lastSave = time.Second
	require.Equal(t, 9*time.Second, c.snapshotTick(), "saving takes at most about a tenth of the time")
}
