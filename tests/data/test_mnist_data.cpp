// Tests on the real MNIST test set (t10k) in $LAMINA_DATA_DIR; skipped by catch_data_main.cpp
// when the files are absent.
#include <catch2/catch.hpp>

#include <lamina/data/idx.hpp>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>

namespace {
std::string data_dir() {
    const char* d = std::getenv("LAMINA_DATA_DIR");
    return d ? d : "";
}
}  // namespace

TEST_CASE("the real MNIST t10k set reads as 10,000 labelled 28x28 images", "[mnist][data]") {
    const std::string dir = data_dir();
    REQUIRE_FALSE(dir.empty());
    CHECK(lamina::data::find_data_dir(nullptr) == dir);

    const auto images = lamina::data::read_idx(dir + "/t10k-images-idx3-ubyte.gz");
    CHECK(images.type == lamina::data::idx_type::u8);
    CHECK(images.dims == std::vector<std::size_t>{10000, 28, 28});

    const lamina::dataset<float> d = lamina::data::read_mnist_dir(dir);
    REQUIRE(d.size() == 10000);
    CHECK(d.sample_size() == 784);
    CHECK(d.target_size() == 1);

    // Pixels in [0,1], using the whole range.
    const auto mm = std::minmax_element(d.inputs().begin(), d.inputs().end());
    CHECK(*mm.first == 0.0f);
    CHECK(*mm.second == 1.0f);

    // Labels 0..9, every class present.
    std::array<int, 10> histogram{};
    for (std::size_t i = 0; i < d.size(); ++i) {
        const float y = d.target(i)[0];
        REQUIRE(y >= 0.0f);
        REQUIRE(y <= 9.0f);
        REQUIRE(y == float(int(y)));
        ++histogram[std::size_t(y)];
    }
    for (int c : histogram) CHECK(c > 800);
    CHECK(histogram[1] == 1135);  // the known t10k class counts (0: 980, 1: 1135, ..., 9: 1009)
    CHECK(histogram[0] == 980);
    CHECK(histogram[9] == 1009);

    // The first ten t10k labels are 7 2 1 0 4 1 4 9 5 9.
    const std::array<float, 10> first = {7, 2, 1, 0, 4, 1, 4, 9, 5, 9};
    for (std::size_t i = 0; i < first.size(); ++i) CHECK(d.target(i)[0] == first[i]);

    // Raw pixels are the scaled ones times 255.
    const lamina::dataset<float> raw = lamina::data::read_mnist_dir(dir, "t10k", false);
    REQUIRE(raw.size() == 10000);
    for (std::size_t i = 0; i < 784; ++i) CHECK(raw.sample(0)[i] == Approx(d.sample(0)[i] * 255.0f));
}

TEST_CASE("the agreed split of the real data", "[mnist][data]") {
    const std::string dir = data_dir();
    const auto s = lamina::data::mnist_train_test(dir);
    INFO(s.description);
    if (s.full_training_set) {
        CHECK(s.train.size() == 60000);
        CHECK(s.test.size() == 10000);
    } else {
        CHECK(s.train.size() == 8000);
        CHECK(s.test.size() == 2000);
        CHECK(s.train.target(0)[0] == 7.0f);
        // Held-out sample 0 is t10k image 8000.
        const lamina::dataset<float> all = lamina::data::read_mnist_dir(dir);
        CHECK(std::equal(s.test.sample(0), s.test.sample(0) + 784, all.sample(8000)));
        CHECK(s.test.target(1999)[0] == all.target(9999)[0]);
        CHECK(s.description.find("8000..9999") != std::string::npos);
    }
    CHECK(s.train.sample_size() == 784);
    CHECK(s.test.sample_size() == 784);
}
