// Core value types: shapes, tensors on each backend, datasets and views.
#include <catch2/catch.hpp>

#include <lamina/lamina.hpp>

namespace lm = lamina;

TEST_CASE("shapes", "[core]") {
    STATIC_REQUIRE(lm::shape<1, 28, 28>::size == 784);
    STATIC_REQUIRE(lm::shape<1, 28, 28>::rank == 3);
    CHECK(lm::shape<16, 4, 4>::str() == "(16,4,4)");
    CHECK(lm::shape<10>::str() == "(10)");
}

TEMPLATE_TEST_CASE("tensors own aligned memory and copy at the edges", "[core][tensor]", lm::host, lm::reference) {
    typename TestType::context ctx;
    lm::tensor<float, TestType> t({2, 3, 4});
    CHECK(t.size() == 24);
    CHECK(t.rank() == 3);
    CHECK(t.extent(1) == 3);
    CHECK(t.extent(3) == 1);
    CHECK(t.shape_string() == "(2,3,4)");
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % lm::buffer_alignment == 0);
    std::vector<float> v(24);
    for (std::size_t i = 0; i < 24; ++i) v[i] = float(i);
    t.from_host(ctx, v);
    CHECK(t.to_host(ctx) == v);
    auto m = t.matrix();  // 2 samples x 12 values
    CHECK(m.rows() == 2);
    CHECK(m.cols() == 12);
    CHECK(m(1, 0) == 12.0f);
    CHECK_THROWS_WITH(t.from_host(ctx, std::vector<float>(5)), Catch::Contains("(2,3,4)") && Catch::Contains("got 5"));
    using tensor_t = lm::tensor<float, TestType>;
    CHECK_THROWS_AS(tensor_t({1, 2, 3, 4, 5}), lm::shape_error);
}

TEST_CASE("datasets: views, slices, splits and size checks", "[core][data]") {
    std::vector<float> x(10 * 3), y(10);
    for (std::size_t i = 0; i < 10; ++i) {
        y[i] = float(i % 2);
        for (std::size_t k = 0; k < 3; ++k) x[i * 3 + k] = float(i * 10 + k);
    }
    lm::dataset_view<float> view{x.data(), y.data(), 10, 3, 1};  // the caller's own memory
    auto [train, test] = view.split(8);
    CHECK(train.size() == 8);
    CHECK(test.size() == 2);
    CHECK(test.sample(0)[1] == 81.0f);
    CHECK(*test.target(1) == 1.0f);
    CHECK_THROWS_WITH(view.slice(5, 11), Catch::Contains("[5, 11)") && Catch::Contains("10 samples"));

    lm::dataset<float> owned(std::vector<float>(x), std::vector<float>(y), 3, 1);
    CHECK(owned.size() == 10);
    CHECK(owned.view().sample(9)[2] == 92.0f);
    CHECK_THROWS_WITH(lm::dataset<float>(std::vector<float>(7), std::vector<float>(2), 3, 1),
                      Catch::Contains("not a multiple of the sample size 3"));
    CHECK_THROWS_WITH(lm::dataset<float>(std::vector<float>(6), std::vector<float>(3), 3, 1),
                      Catch::Contains("2 samples but 3 target values"));
}
