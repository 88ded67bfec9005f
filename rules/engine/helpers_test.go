package engine_test

import "encoding/json"

func yamlToJSON(v any) ([]byte, error) { return json.Marshal(v) }
