package redisstore

// Encode, EncodeV2 and EncodeV1 let the external tests write records in
// layout versions 3, 2 and 1, as this and older releases would.
var (
	Encode   = encode
	EncodeV2 = encodeV2
	EncodeV1 = encodeV1
)

// LuaPrelude lets the external tests run the scripts' helpers, which
// include the parse that releases before pools share.
const LuaPrelude = luaPrelude
