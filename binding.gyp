{
  "variables": {
    "lockstep_sanitize%": "<!(node -p \"process.env.LOCKSTEP_SANITIZE ? 1 : 0\")",
    "lockstep_dispatch%": "<!(node -p \"process.env.LOCKSTEP_DISPATCH === 'switch' ? 'switch' : 'goto'\")",
    "lockstep_tests%": "<!(node -p \"require('fs').existsSync('test/native') ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "lockstep",
      "sources": [
        "native/binding/addon.cc",
        "native/cpu/cpu.cc",
        "native/cpu/debug.cc",
        "native/cpu/csr.cc",
        "native/cpu/mmu.cc",
        "native/cpu/decode.cc",
        "native/cpu/jit/jit_x86_64.cc",
        "native/channel/channel.cc",
        "native/channel/frame.cc",
        "native/channel/sha256.cc",
        "native/log/codec.cc",
        "native/machine/machine.cc",
        "native/machine/plic.cc",
        "native/machine/semihost.cc",
        "native/machine/snapshot.cc",
        "native/machine/uart.cc",
        "native/machine/virtio.cc",
        "native/machine/virtio_devices.cc",
        "native/machine/block_file.cc",
        "native/machine/net/tap.cc",
        "native/machine/net/udp.cc",
        "native/runner/output_gate.cc",
        "native/runner/precopy.cc",
        "native/runner/replay_feed.cc",
        "native/runner/replication_link.cc",
        "native/runner/vcpu_thread.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17"],
      "cflags_cc": ["-std=c++20", "-O3", "-fno-exceptions", "-fno-plt", "-fomit-frame-pointer", "-fno-gcse", "-fno-crossjumping", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["lockstep_sanitize==1", {
          "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
          "ldflags": ["-fsanitize=address,undefined"]
        }],
        ["lockstep_dispatch=='switch'", {
          "defines": ["LOCKSTEP_DISPATCH_SWITCH"]
        }],
        ["OS=='mac'", {
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
            "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
            "OTHER_CPLUSPLUSFLAGS": ["-O3"]
          }
        }]
      ]
    }
  ],
  "conditions": [
    ["lockstep_tests==1", {
      "targets": [
        {
          "target_name": "lockstep_test",
          "product_dir": "<(PRODUCT_DIR)/test",
          "sources": [
            "test/native/ring_probe.cc",
            "test/native/udp_probe.cc",
            "test/native/precopy_probe.cc",
            "native/machine/net/udp.cc",
            "native/runner/precopy.cc"
          ],
          "include_dirs": [
            "<!(node -p \"require('node-addon-api').include_dir\")",
            "native"
          ],
          "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17"],
          "cflags_cc": ["-std=c++20", "-O2", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
          "conditions": [
            ["lockstep_sanitize==1", {
              "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
              "ldflags": ["-fsanitize=address,undefined"]
            }],
            ["OS=='mac'", {
              "xcode_settings": {
                "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
                "GCC_ENABLE_CPP_EXCEPTIONS": "NO"
              }
            }]
          ]
        },
        {
          "target_name": "lockstep_channel_test",
          "sources": [
            "test/native/channel_binding.cc",
            "native/channel/channel.cc",
            "native/channel/frame.cc",
            "native/channel/sha256.cc"
          ],
          "include_dirs": [
            "<!(node -p \"require('node-addon-api').include_dir\")",
            "native"
          ],
          "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=c++17"],
          "cflags_cc": ["-std=c++20", "-O3", "-fno-exceptions", "-fno-plt", "-fomit-frame-pointer", "-fno-gcse", "-fno-crossjumping", "-Wall", "-Wextra", "-Wno-unused-parameter"],
          "conditions": [
            ["lockstep_sanitize==1", {
              "cflags_cc": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
              "ldflags": ["-fsanitize=address,undefined"]
            }],
            ["OS=='mac'", {
              "xcode_settings": {
                "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
                "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
                "OTHER_CPLUSPLUSFLAGS": ["-O3"]
              }
            }]
          ]
        }
      ]
    }]
  ]
}
