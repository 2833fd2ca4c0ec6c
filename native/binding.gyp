{
  "targets": [
    {
      "target_name": "nettrail_native",
      "sources": ["nettrail_native.cc", "event_loop.cc", "packet_decoder.cc", "links.cc", "conntrack.cc", "chunk_encoder.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
