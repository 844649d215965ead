package redisstore

// EncodeV1 lets the external tests write records in layout version 1, as
// an older release would.
var EncodeV1 = encodeV1
