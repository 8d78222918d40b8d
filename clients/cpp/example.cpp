// Example: forecast with ovcast from C++, survive a server crash, and see a timeout.
//
//   g++ -std=c++17 -O2 -Wall -Wextra -o example clients/cpp/example.cpp
//   ./example models/default window.csv            # server started as `ovcast serve ...`
//   ./example models/default window.csv .venv/bin/python   # ... or as `PYTHON -m ovcast serve ...`
//
// window.csv: one row per time step, one comma-separated value per channel, no header.
// Prints one line per check: "FORECAST ...", "RESTARTED ...", "TIMEOUT ...", "RECOVERED ...".
#include <signal.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "inference_engine.h"

static std::vector<std::vector<float>> read_window(const std::string& path) {
  std::vector<std::vector<float>> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<float> row;
    std::stringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) row.push_back(std::stof(cell));
    rows.push_back(row);
  }
  return rows;
}

static void print_forecast(const char* label, const ovcast::Result& r) {
  std::cout << label << " steps=" << r.predictions.size()
            << " channels=" << (r.predictions.empty() ? 0 : r.predictions[0].size())
            << " restarted=" << r.restarted << " first=";
  std::cout.precision(9);
  for (float v : r.predictions.at(0)) std::cout << v << ' ';
  std::cout << '\n';
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL_DIR WINDOW_CSV [PYTHON]\n";
    return 2;
  }
  ovcast::Options options;
  if (argc > 3) options.command = {argv[3], "-m", "ovcast"};
  else options.command = {"ovcast"};
  for (const char* arg : {"serve", "--mode", "jsonl", "--model"}) options.command.push_back(arg);
  options.command.push_back(argv[1]);
  options.timeout = std::chrono::milliseconds(10000);

  auto window = read_window(argv[2]);
  try {
    ovcast::InferenceEngine engine(options);
    engine.on_restart = [](const std::string& why) { std::cerr << "restart: " << why << '\n'; };

    ovcast::Result first = engine.predict(window, 1705678900000);
    if (!first.ok()) {
      std::cerr << "predict failed: " << ovcast::to_string(first.error) << ": " << first.message << '\n';
      return 1;
    }
    print_forecast("FORECAST", first);

    // A bad window is a typed error, and the server keeps serving.
    std::vector<std::vector<float>> short_window(window.begin(), window.begin() + 3);
    ovcast::Result bad = engine.predict(short_window);
    std::cout << "BAD_INPUT error=" << ovcast::to_string(bad.error) << " code=" << bad.server_code
              << '\n';

    // Kill the server: the next call restarts it and still answers.
    kill(engine.pid(), SIGKILL);
    ovcast::Result after_kill = engine.predict(window);
    if (!after_kill.ok()) {
      std::cerr << "after kill: " << ovcast::to_string(after_kill.error) << ": " << after_kill.message << '\n';
      return 1;
    }
    print_forecast("RESTARTED", after_kill);

    // A timeout the server cannot meet; its late answer must not be taken for the next one.
    engine.set_timeout(std::chrono::milliseconds(0));
    ovcast::Result late = engine.predict(window);
    std::cout << "TIMEOUT error=" << ovcast::to_string(late.error) << '\n';
    engine.set_timeout(std::chrono::milliseconds(10000));
    ovcast::Result again = engine.predict(window);
    print_forecast("RECOVERED", again);
    std::cout << "RESTARTS " << engine.restarts() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
