import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  classifyToolFailure,
  gpiodArgv,
  lastLine,
  parseGpiodetect,
  parseGpioget,
  parseGpioinfo,
  parseToolsVersion,
} from "../../../src/agent/hardware/gpio/gpiod-tools.ts";

// The layout of libgpiod 1.6.3's gpioinfo (Debian 12 / Raspberry Pi OS bookworm) on a Raspberry Pi 4.
const gpioinfoV1 = [
  "gpiochip0 - 58 lines:",
  '\tline   0:     "ID_SDA"       unused   input  active-high ',
  '\tline   1:     "ID_SCL"       unused   input  active-high ',
  '\tline  17:     "GPIO17"       unused  output  active-low  ',
  '\tline  18:     "GPIO18"    "gpioset"  output  active-high [used]',
  "\tline  19:      unnamed       unused   input  active-high ",
  '\tline  42: "STATUS_LED_G_CLK" "led0" output active-high [used]',
  '\tline  43: "SPI_SCLK" "my daemon" input active-high [used open-drain]',
  "gpiochip1 - 8 lines:",
  '\tline   0:      "BT_ON"       unused  output  active-high ',
  '\tline   4:  "SD_PWR_ON" "sd_vcc_reg"  output  active-high [used]',
  "",
].join("\n");

// libgpiod 2.x (Debian 13): name, direction, then attributes; consumer="…" when the line is in use.
const gpioinfoV2 = [
  "gpiochip0 - 54 lines:",
  '\tline   0:\t"ID_SDA"        \tinput',
  '\tline  18:\t"GPIO18"        \toutput active-low consumer="gpioset"',
  "\tline  19:\tunnamed         \tinput bias=pull-up",
  '\tline  20:\t"GPIO20"        \tinput edges=both event-clock=realtime consumer="gpio monitor"',
  "",
].join("\n");

describe("parseGpioinfo", () => {
  it("reads v1 lines: names, consumers, direction, active state, used flag, per chip", () => {
    const chips = parseGpioinfo(gpioinfoV1);
    assert.deepEqual(
      chips.map((chip) => [chip.chip, chip.lines, chip.lineInfo.length]),
      [
        ["gpiochip0", 58, 7],
        ["gpiochip1", 8, 2],
      ],
    );
    const [chip0, chip1] = chips;
    assert.deepEqual(chip0?.lineInfo[0], {
      offset: 0,
      name: "ID_SDA",
      direction: "input",
      activeLow: false,
      used: false,
    });
    assert.deepEqual(chip0?.lineInfo[2], {
      offset: 17,
      name: "GPIO17",
      direction: "output",
      activeLow: true,
      used: false,
    });
    assert.deepEqual(chip0?.lineInfo[3], {
      offset: 18,
      name: "GPIO18",
      consumer: "gpioset",
      direction: "output",
      activeLow: false,
      used: true,
    });
    assert.deepEqual(chip0?.lineInfo[4], { offset: 19, direction: "input", activeLow: false, used: false });
    assert.equal(chip0?.lineInfo[5]?.consumer, "led0");
    assert.equal(chip0?.lineInfo[6]?.consumer, "my daemon", "a quoted consumer keeps its spaces");
    assert.equal(chip0?.lineInfo[6]?.used, true, "used among other flags");
    assert.deepEqual(chip1?.lineInfo[1], {
      offset: 4,
      name: "SD_PWR_ON",
      consumer: "sd_vcc_reg",
      direction: "output",
      activeLow: false,
      used: true,
    });
  });

  it("reads v2 lines: consumer=… marks a used line, attributes after the direction", () => {
    const [chip] = parseGpioinfo(gpioinfoV2);
    assert.equal(chip?.lines, 54);
    assert.deepEqual(chip?.lineInfo[0], {
      offset: 0,
      name: "ID_SDA",
      direction: "input",
      activeLow: false,
      used: false,
    });
    assert.deepEqual(chip?.lineInfo[1], {
      offset: 18,
      name: "GPIO18",
      consumer: "gpioset",
      direction: "output",
      activeLow: true,
      used: true,
    });
    assert.deepEqual(chip?.lineInfo[2], { offset: 19, direction: "input", activeLow: false, used: false });
    assert.equal(chip?.lineInfo[3]?.consumer, "gpio monitor");
  });

  it("ignores lines before a chip header and garbage", () => {
    assert.deepEqual(parseGpioinfo("\tline   0: unnamed unused input active-high\nnonsense\n"), []);
    assert.deepEqual(parseGpioinfo(""), []);
  });
});

describe("parseGpiodetect", () => {
  it("reads name, label and line count; skips other lines", () => {
    const text = [
      "gpiochip0 [pinctrl-bcm2711] (58 lines)",
      "gpiochip1 [raspberrypi-exp-gpio] (8 lines)",
      "gpiochip2 [gpio-sim.0-node0] (1 line)",
      "warning: something",
      "",
    ].join("\n");
    assert.deepEqual(parseGpiodetect(text), [
      { name: "gpiochip0", label: "pinctrl-bcm2711", lines: 58 },
      { name: "gpiochip1", label: "raspberrypi-exp-gpio", lines: 8 },
      { name: "gpiochip2", label: "gpio-sim.0-node0", lines: 1 },
    ]);
    assert.deepEqual(parseGpiodetect(""), [], "no chip: gpiodetect prints nothing");
  });
});

describe("parseToolsVersion", () => {
  it("reads the major version (text captured from Debian 12's gpiod 1.6.3)", () => {
    assert.equal(
      parseToolsVersion("gpioset (libgpiod) v1.6.3\nCopyright (C) 2017-2018 Bartosz Golaszewski\n"),
      1,
    );
    assert.equal(parseToolsVersion("gpioset (libgpiod) v2.1.3\n"), 2);
    assert.equal(
      parseToolsVersion("gpioset (libgpiod) v3.0\n"),
      undefined,
      "unknown generations are refused",
    );
    assert.equal(parseToolsVersion("bash: gpioset: command not found"), undefined);
  });
});

describe("parseGpioget", () => {
  it("reads v1 / v2 --numeric digits and v2 active/inactive", () => {
    assert.equal(parseGpioget("1\n"), 1);
    assert.equal(parseGpioget("0\n"), 0);
    assert.equal(parseGpioget('"18"=active\n'), 1);
    assert.equal(parseGpioget("18=inactive\n"), 0);
    assert.equal(parseGpioget(""), undefined);
    assert.equal(parseGpioget("0 1\n"), undefined, "one line at a time");
  });
});

describe("gpiodArgv", () => {
  it("v1: --mode=signal to hold, --mode=time with --sec/--usec to pulse, chip then offset", () => {
    assert.deepEqual(gpiodArgv.hold(1, "gpiochip0", 18, 1), ["--mode=signal", "gpiochip0", "18=1"]);
    assert.deepEqual(gpiodArgv.pulse(1, "gpiochip0", 18, 1, 1250), [
      "--mode=time",
      "--sec=1",
      "--usec=250000",
      "gpiochip0",
      "18=1",
    ]);
    assert.deepEqual(gpiodArgv.pulse(1, "gpiochip0", 4, 0, 7), [
      "--mode=time",
      "--sec=0",
      "--usec=7000",
      "gpiochip0",
      "4=0",
    ]);
    assert.deepEqual(gpiodArgv.get(1, "gpiochip1", 3), ["gpiochip1", "3"]);
    assert.deepEqual(gpiodArgv.info(1, "gpiochip0"), ["gpiochip0"]);
  });

  it("v2: -c CHIP, holds by default, -t MS,0 toggles once and exits, --numeric for gpioget", () => {
    assert.deepEqual(gpiodArgv.hold(2, "gpiochip0", 18, 0), ["-c", "gpiochip0", "18=0"]);
    assert.deepEqual(gpiodArgv.pulse(2, "gpiochip0", 18, 1, 250), [
      "-c",
      "gpiochip0",
      "-t",
      "250ms,0",
      "18=1",
    ]);
    assert.deepEqual(gpiodArgv.get(2, "gpiochip0", 18), ["--numeric", "-c", "gpiochip0", "18"]);
    assert.deepEqual(gpiodArgv.info(2, "gpiochip0"), ["-c", "gpiochip0"]);
  });
});

describe("classifyToolFailure", () => {
  it("maps the tools' strerror texts", () => {
    // Captured from gpiod 1.6.3 on a machine without the chip:
    assert.equal(
      classifyToolFailure("gpioset: error setting the GPIO line values: No such file or directory\n"),
      "no-device",
    );
    assert.equal(
      classifyToolFailure("gpioinfo: looking up chip gpiochip0: No such file or directory\n"),
      "no-device",
    );
    assert.equal(
      classifyToolFailure("gpioset: error setting the GPIO line values: Device or resource busy\n"),
      "busy",
    );
    assert.equal(classifyToolFailure("gpioget: error reading GPIO values: Device or resource busy"), "busy");
    assert.equal(
      classifyToolFailure(
        "gpioset: unable to request lines on chip '/dev/gpiochip0': Device or resource busy",
      ),
      "busy",
    );
    assert.equal(classifyToolFailure("gpioget: error reading GPIO values: Permission denied"), "permission");
    assert.equal(
      classifyToolFailure("gpioset: error setting the GPIO line values: Invalid argument"),
      "invalid",
    );
    assert.equal(
      classifyToolFailure("gpioset: cannot find GPIO chip character device 'gpiochip9'"),
      "no-device",
    );
    assert.equal(classifyToolFailure("Segmentation fault"), "other");
  });

  it("lastLine picks the last non-empty line", () => {
    assert.equal(lastLine("a\n\nb  \n\n"), "b");
    assert.equal(lastLine(""), "");
  });
});
