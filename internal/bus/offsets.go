package bus

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// adminClient builds a kafka-go client for one-shot admin requests; the
// caller closes the transport's idle connections.
func adminClient(opts Options) (*kafka.Client, *kafka.Transport, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	tr, err := opts.transport()
	if err != nil {
		return nil, nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(opts.Brokers...), Transport: tr, Timeout: 30 * time.Second}, tr, nil
}

func partitionsOf(ctx context.Context, client *kafka.Client, topic string) ([]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("reading metadata of %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("reading metadata of %s: %w", topic, t.Error)
		}
		parts := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
		sort.Ints(parts)
		return parts, nil
	}
	return nil, fmt.Errorf("reading metadata of %s: topic not found", topic)
}

// EndOffsets returns, for each partition of topic, the offset the next
// produced message will get (the high watermark).
func EndOffsets(ctx context.Context, opts Options, topic string) (map[int]int64, error) {
	client, tr, err := adminClient(opts)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	defer tr.CloseIdleConnections()
	parts, err := partitionsOf(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	reqs := make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = kafka.LastOffsetOf(p)
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(parts))
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("listing end offset of %s/%d: %w", topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	if len(out) != len(parts) {
		return nil, fmt.Errorf("listing end offsets of %s: got %d of %d partitions", topic, len(out), len(parts))
	}
	return out, nil
}

// CommittedOffsets returns, for each partition of topic, the next offset
// group will read (the committed offset), or -1 where the group has not
// committed. Together with EndOffsets it gives the group's lag.
func CommittedOffsets(ctx context.Context, opts Options, group, topic string) (map[int]int64, error) {
	client, tr, err := adminClient(opts)
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	defer tr.CloseIdleConnections()
	parts, err := partitionsOf(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s on %s: %w", group, topic, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetching offsets of group %s on %s: %w", group, topic, resp.Error)
	}
	out := make(map[int]int64, len(parts))
	for _, p := range parts {
		out[p] = -1
	}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("fetching offset of group %s on %s/%d: %w", group, topic, po.Partition, po.Error)
		}
		out[po.Partition] = po.CommittedOffset
	}
	return out, nil
}

// Ping asks the brokers for cluster metadata: it succeeds when a broker
// answers over the configured TLS and SASL. Readiness checks use it.
func Ping(ctx context.Context, opts Options) error {
	client, tr, err := adminClient(opts)
	if err != nil {
		return fmt.Errorf("pinging brokers: %w", err)
	}
	defer tr.CloseIdleConnections()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil {
		return fmt.Errorf("pinging brokers: %w", err)
	}
	if len(md.Brokers) == 0 {
		return fmt.Errorf("pinging brokers: metadata lists no broker")
	}
	return nil
}
