package main

import (
	"runtime"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
)

func numCPU() int { return runtime.NumCPU() }

// queuedJobs counts the process-webhook jobs waiting or running in ns.
func queuedJobs(pool *redis.Pool, ns string) (int, error) {
	conn := pool.Get()
	defer conn.Close()
	n, err := redis.Int(conn.Do("LLEN", queue.ListKey(ns)))
	if err != nil {
		return 0, err
	}
	cursor := "0"
	for {
		reply, err := redis.Values(conn.Do("SCAN", cursor, "MATCH", queue.ListKey(ns)+":*:inprogress", "COUNT", 1000))
		if err != nil {
			return 0, err
		}
		cursor, _ = redis.String(reply[0], nil)
		keys, _ := redis.Strings(reply[1], nil)
		for _, k := range keys {
			m, err := redis.Int(conn.Do("LLEN", k))
			if err != nil {
				return 0, err
			}
			n += m
		}
		if cursor == "0" {
			return n, nil
		}
	}
}
