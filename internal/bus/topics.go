package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic for EnsureTopics.
type TopicSpec struct {
	Name string
	// Partitions; -1 or 0 means the broker default (num.partitions).
	Partitions int
	// ReplicationFactor; -1 or 0 means the broker default
	// (default.replication.factor).
	ReplicationFactor int
	// Retention is retention.ms; 0 means the broker default.
	Retention time.Duration
	// Configs are further topic configs (e.g. "min.insync.replicas").
	Configs map[string]string
}

// DefaultTopicSpecs returns the platform's four topics with their
// retention. Partition count and replication factor are left to the broker
// defaults; a cluster deployment sets them in its configuration.
func DefaultTopicSpecs() []TopicSpec {
	const day = 24 * time.Hour
	return []TopicSpec{
		{Name: TopicRaw, Retention: 3 * day},
		{Name: TopicEvents, Retention: 7 * day},
		{Name: TopicFindings, Retention: 30 * day},
		{Name: TopicDLQ, Retention: 30 * day},
	}
}

// EnsureTopics creates the topics that do not exist and waits until every
// topic has a leader for each partition. It is idempotent: existing topics
// are left as they are (their partitions and configs are not changed).
func EnsureTopics(ctx context.Context, opts Options, specs []TopicSpec) error {
	client, tr, err := adminClient(opts)
	if err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	defer tr.CloseIdleConnections()

	req := &kafka.CreateTopicsRequest{}
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		if s.Name == "" {
			return errors.New("ensuring topics: topic with no name")
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		if tc.NumPartitions == 0 {
			tc.NumPartitions = -1
		}
		if tc.ReplicationFactor == 0 {
			tc.ReplicationFactor = -1
		}
		if s.Retention > 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(s.Retention.Milliseconds(), 10)})
		}
		for k, v := range s.Configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
		names = append(names, s.Name)
	}
	if len(names) == 0 {
		return nil
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("creating topics %v: %w", names, err)
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", name, terr)
		}
	}
	return waitForLeaders(ctx, client, names)
}

// waitForLeaders polls metadata until every partition of every topic has a
// leader, so that the first produce does not race the controller.
func waitForLeaders(ctx context.Context, client *kafka.Client, names []string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		var pending string
		switch {
		case err != nil:
			pending = err.Error()
		default:
			pending = unreadyTopic(md, names)
		}
		if pending == "" {
			// Metadata can name a leader before that broker serves the
			// partition: ask every leader for its end offsets too.
			pending = unservedPartition(ctx, client, md)
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for topic leaders (%s): %w", pending, ctx.Err())
		case <-tick.C:
		}
	}
}

// unreadyTopic describes the first topic that is missing or lacks a
// partition leader, or returns "" when all are ready.
func unreadyTopic(md *kafka.MetadataResponse, names []string) string {
	byName := make(map[string]kafka.Topic, len(md.Topics))
	for _, t := range md.Topics {
		byName[t.Name] = t
	}
	for _, n := range names {
		t, ok := byName[n]
		switch {
		case !ok:
			return n + ": missing"
		case t.Error != nil:
			return n + ": " + t.Error.Error()
		case len(t.Partitions) == 0:
			return n + ": no partitions"
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return fmt.Sprintf("%s/%d: no leader", n, p.ID)
			}
		}
	}
	return ""
}

// unservedPartition lists the end offset of every partition in md and
// describes the first one whose leader does not answer yet, or returns "".
func unservedPartition(ctx context.Context, client *kafka.Client, md *kafka.MetadataResponse) string {
	reqs := make(map[string][]kafka.OffsetRequest, len(md.Topics))
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			reqs[t.Name] = append(reqs[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return err.Error()
	}
	for name, want := range reqs {
		got := resp.Topics[name]
		if len(got) != len(want) {
			return fmt.Sprintf("%s: %d of %d partitions answered", name, len(got), len(want))
		}
		for _, po := range got {
			if po.Error != nil {
				return fmt.Sprintf("%s/%d: %v", name, po.Partition, po.Error)
			}
		}
	}
	return ""
}
